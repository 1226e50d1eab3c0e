"use client";
import { useRouter } from "next/navigation";
import { Suspense, useEffect, useState } from "react";
import { useSearchParams } from "next/navigation";
import { Button, Field, inputClass } from "@/components/ui";
import { ApiError } from "@/lib/api";
import { anonymousClient, storeToken } from "@/lib/session";

const REASONS: Record<string, string> = {
  expired: "Your session has expired or was revoked. Sign in again.",
  required: "Sign in to see the dashboard.",
  signed_out: "You are signed out.",
};

function LoginForm() {
  const router = useRouter();
  const params = useSearchParams();
  const reason = REASONS[params.get("reason") ?? ""];
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => setError(null), [username, password]);

  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const result = await anonymousClient().login(username, password);
      storeToken(result.access_token);
      router.replace("/");
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 422)) setError("Wrong username or password.");
      else if (err instanceof ApiError && err.status === 429) setError("Too many failed attempts. Wait a moment and try again.");
      else setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit} className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
      <h1 className="mb-1 text-lg font-semibold">ClaudeCodeProxy</h1>
      <p className="mb-4 text-sm text-slate-500">Sign in with your admin account.</p>
      {reason && (
        <p className="mb-3 rounded bg-amber-50 p-2 text-sm text-amber-900" data-testid="login-reason">
          {reason}
        </p>
      )}
      <div className="flex flex-col gap-3">
        <Field label="Username">
          <input className={inputClass} name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required />
        </Field>
        <Field label="Password">
          <input className={inputClass} name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </Field>
        {error && (
          <p className="text-sm text-red-700" role="alert">
            {error}
          </p>
        )}
        <Button tone="primary" type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </Button>
      </div>
    </form>
  );
}

export default function LoginPage() {
  return (
    <div className="flex min-h-screen items-center justify-center p-4">
      <Suspense fallback={<div role="status">Loading…</div>}>
        <LoginForm />
      </Suspense>
    </div>
  );
}
