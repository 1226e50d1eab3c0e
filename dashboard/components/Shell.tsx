"use client";
// The frame of every signed-in page: navigation (a sidebar at desktop width, a scrolling
// bar on a phone), who is signed in, and sign-out.

import Link from "next/link";
import { usePathname } from "next/navigation";
import type { ReactNode } from "react";
import { useSession } from "@/lib/session";
import { Badge } from "./ui";

const NAV = [
  { href: "/", label: "Overview" },
  { href: "/users/", label: "Users" },
  { href: "/teams/", label: "Teams" },
  { href: "/usage/", label: "Usage" },
  { href: "/cost/", label: "Cost" },
  { href: "/pricing/", label: "Pricing" },
  { href: "/models/", label: "Models" },
  { href: "/circuits/", label: "Circuits" },
  { href: "/audit/", label: "Audit log" },
];

export function Shell({ children }: { children: ReactNode }) {
  const pathname = usePathname();
  const { me, signOut } = useSession();
  const active = (href: string) => (href === "/" ? pathname === "/" : pathname.startsWith(href.replace(/\/$/, "")));
  return (
    <div className="md:flex">
      <aside className="border-b border-slate-200 bg-slate-900 text-slate-100 md:min-h-screen md:w-52 md:shrink-0 md:border-b-0">
        <div className="flex items-center justify-between px-4 py-3 md:block">
          <div className="text-sm font-semibold tracking-wide">ClaudeCodeProxy</div>
          <div className="flex items-center gap-2 text-xs text-slate-300 md:mt-2">
            <span data-testid="whoami">{me?.username}</span>
            <Badge tone={me?.role === "admin" ? "indigo" : "amber"}>{me?.role}</Badge>
          </div>
        </div>
        <nav className="flex gap-1 overflow-x-auto px-2 pb-2 md:flex-col md:px-2">
          {NAV.map((n) => (
            <Link
              key={n.href}
              href={n.href}
              className={`whitespace-nowrap rounded px-3 py-1.5 text-sm ${active(n.href) ? "bg-slate-700 text-white" : "text-slate-300 hover:bg-slate-800"}`}
            >
              {n.label}
            </Link>
          ))}
          <button
            className="whitespace-nowrap rounded px-3 py-1.5 text-left text-sm text-slate-400 hover:bg-slate-800 md:mt-4"
            onClick={() => signOut("signed_out")}
          >
            Sign out
          </button>
        </nav>
      </aside>
      <main className="min-w-0 flex-1 p-4 md:p-6">{children}</main>
    </div>
  );
}
