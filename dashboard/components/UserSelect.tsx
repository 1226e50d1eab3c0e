"use client";
import { useSession } from "@/lib/session";
import { useLoad } from "@/lib/useLoad";
import { inputClass } from "./ui";

/** A select over active users (value: user id as a string, "" for everyone). */
export function UserSelect({ value, onChange, label = "User" }: { value: string; onChange: (v: string) => void; label?: string }) {
  const { client } = useSession();
  const users = useLoad(() => client.listUsers({ limit: 200 }), [client]);
  return (
    <select aria-label={label} className={inputClass} value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="">All users</option>
      {users.data?.items.map((u) => (
        <option key={u.id} value={String(u.id)}>
          {u.name}
        </option>
      ))}
    </select>
  );
}
