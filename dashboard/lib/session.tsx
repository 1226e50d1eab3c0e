"use client";
// The session: the token (the only thing the dashboard keeps in localStorage), the API
// client that sends it, and who is signed in. A 401 anywhere clears the token and goes
// back to the login page with a reason, never to a blank page.

import { useRouter } from "next/navigation";
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { ApiClient, ApiError, type Me } from "./api";

const TOKEN_KEY = "ccproxy.session";

export function readToken(): string | null {
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function storeToken(token: string | null): void {
  if (token === null) window.localStorage.removeItem(TOKEN_KEY);
  else window.localStorage.setItem(TOKEN_KEY, token);
}

interface Session {
  client: ApiClient;
  me: Me | null;
  canWrite: boolean;
  signOut: (reason?: string) => void;
}

const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside SessionProvider");
  return s;
}

/** The client for pages outside a session (the login page). */
export function anonymousClient(): ApiClient {
  return new ApiClient({ token: () => null });
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const router = useRouter();
  const [me, setMe] = useState<Me | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  const signOut = useCallback(
    (reason?: string) => {
      storeToken(null);
      router.replace(`/login/${reason ? `?reason=${encodeURIComponent(reason)}` : ""}`);
    },
    [router],
  );

  const client = useMemo(
    () => new ApiClient({ token: readToken, onUnauthorized: () => signOut("expired") }),
    [signOut],
  );

  useEffect(() => {
    if (!readToken()) {
      signOut("required");
      return;
    }
    client
      .me()
      .then(setMe)
      .catch((e: unknown) => {
        // A 401 is already on its way back to the login page (onUnauthorized).
        if (e instanceof ApiError && e.status === 401) return;
        setFailure(e instanceof Error ? e.message : String(e));
      });
  }, [client, signOut]);

  if (failure) {
    return (
      <div className="p-8" role="alert">
        <p className="font-semibold text-red-700">The dashboard could not start its session.</p>
        <p className="text-sm text-slate-600">{failure}</p>
        <button className="mt-3 underline" onClick={() => window.location.reload()}>
          Try again
        </button>
      </div>
    );
  }
  if (!me) {
    return (
      <div className="p-8 text-slate-500" role="status">
        Checking your session…
      </div>
    );
  }
  return (
    <SessionContext.Provider value={{ client, me, canWrite: me.role === "admin", signOut }}>
      {children}
    </SessionContext.Provider>
  );
}
