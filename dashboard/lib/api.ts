// The typed client of the admin API (docs/openapi.yaml). The only place the dashboard
// talks to the server: the session token goes as a Bearer header, never in a URL, and a
// 401 (expired, revoked, deleted admin) is reported through `onUnauthorized` so the app
// can return to the login page with a message.

export type Role = "admin" | "viewer";

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export interface LoginResult {
  access_token: string;
  token_type: string;
  expires_in: number;
}

export interface Me {
  username: string;
  role: Role;
}

export interface User {
  id: number;
  name: string;
  description: string | null;
  team: string | null;
  team_id?: number | null;
  status: string;
  monthly_budget: string | null;
  alert_thresholds?: number[] | null;
  allowed_models?: string[] | null;
  created_at: string;
  [extra: string]: unknown;
}

export interface Team {
  id: number;
  name: string;
  description?: string | null;
  monthly_budget: string | null;
  alert_thresholds?: number[] | null;
  allowed_models?: string[] | null;
  members?: number | string[] | null;
  created_at?: string;
  [extra: string]: unknown;
}

export interface AccessKey {
  id: number;
  user_id?: number;
  prefix: string;
  status: string;
  bedrock_region: string | null;
  bedrock_model: string | null;
  bedrock_default_credentials?: boolean;
  bedrock_key_registered?: boolean;
  rpm?: number | null;
  created_at: string;
  revoked_at?: string | null;
  last_used_at?: string | null;
  [extra: string]: unknown;
}

export interface IssuedKey extends AccessKey {
  raw_key: string;
}

export interface UsageTotals {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  cost_usd: string;
  bedrock_requests?: number;
  fallback_requests?: number;
  plan_requests?: number;
  [extra: string]: unknown;
}

export interface UsageBucket extends UsageTotals {
  bucket_start: string;
}

export interface ModelCost extends UsageTotals {
  model: string;
}

export interface UsageReport {
  bucket: string;
  start: string;
  end: string;
  report_tz?: string;
  totals: UsageTotals;
  buckets: UsageBucket[];
  by_model: ModelCost[];
  [extra: string]: unknown;
}

export interface TopUser extends UsageTotals {
  user_id: number;
  user: string;
}

export interface UsageEventRow {
  request_id: string;
  created_at: string;
  user: string;
  user_id?: number;
  access_key_id?: number;
  provider: string;
  is_fallback: boolean;
  model: string | null;
  status: number;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  cost_usd: string;
  latency_ms: number;
  [extra: string]: unknown;
}

export interface Price {
  model: string;
  input: string;
  output: string;
  cache_write_5m: string;
  cache_write_1h: string;
  cache_read: string;
  effective_date: string;
  source?: string;
  [extra: string]: unknown;
}

export interface Circuit {
  key_id: number;
  prefix?: string;
  user?: string;
  state: string;
  failures?: number;
  opened_at?: string | null;
  open_until?: string | null;
  [extra: string]: unknown;
}

export interface AuditEntry {
  id: number;
  created_at: string;
  actor: string;
  action: string;
  target: string | null;
  changes?: Record<string, unknown> | null;
  client_addr?: string | null;
  [extra: string]: unknown;
}

/** The admin API's error shape: {"error": {"code", "message", "field"}}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === "") continue;
    params.set(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : "";
}

export interface ClientOptions {
  baseUrl?: string;
  token: () => string | null;
  onUnauthorized?: (error: ApiError) => void;
  fetch?: typeof fetch;
}

export type UsageQuery = {
  start?: string;
  end?: string;
  period?: string;
  bucket?: string;
  user?: string | number;
  team?: string | number;
  key?: string | number;
  model?: string;
  provider?: string;
  status?: string | number;
};

export class ApiClient {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: ClientOptions) {
    this.baseUrl = (options.baseUrl ?? "").replace(/\/$/, "");
    this.fetchImpl = options.fetch ?? ((...args) => fetch(...args));
  }

  /** One request; a non-2xx answer becomes an ApiError with the server's code and message. */
  async raw(method: string, path: string, init: { query?: Query; body?: unknown; auth?: boolean } = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (init.auth !== false) {
      const token = this.options.token();
      if (token) headers.authorization = `Bearer ${token}`;
    }
    let body: string | undefined;
    if (init.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(init.body);
    }
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.baseUrl}/admin${path}${queryString(init.query)}`, {
        method,
        headers,
        body,
        credentials: "omit",
      });
    } catch {
      throw new ApiError(0, "network_error", "The gateway could not be reached.");
    }
    if (response.ok) return response;
    const error = await toError(response);
    if (error.status === 401 && init.auth !== false) this.options.onUnauthorized?.(error);
    throw error;
  }

  async json<T>(method: string, path: string, init: { query?: Query; body?: unknown; auth?: boolean } = {}): Promise<T> {
    const response = await this.raw(method, path, init);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  // --- session
  login(username: string, password: string): Promise<LoginResult> {
    return this.json("POST", "/auth/login", { body: { username, password }, auth: false });
  }
  me(): Promise<Me> {
    return this.json("GET", "/me");
  }

  // --- users
  listUsers(q: { search?: string; team?: string; status?: string; limit?: number; offset?: number } = {}): Promise<Page<User>> {
    return this.json("GET", "/users", { query: q });
  }
  createUser(body: { name: string; description?: string; team?: string; monthly_budget?: string }): Promise<User> {
    return this.json("POST", "/users", { body });
  }
  getUser(id: number): Promise<User> {
    return this.json("GET", `/users/${id}`);
  }
  updateUser(id: number, body: Record<string, unknown>): Promise<User> {
    return this.json("PATCH", `/users/${id}`, { body });
  }
  deactivateUser(id: number): Promise<User> {
    return this.json("POST", `/users/${id}/deactivate`);
  }
  deleteUser(id: number): Promise<unknown> {
    return this.json("DELETE", `/users/${id}`);
  }
  setBudget(id: number, body: { monthly_budget: string | null; alert_thresholds?: number[] }): Promise<unknown> {
    return this.json("PUT", `/users/${id}/budget`, { body });
  }
  getBudget(id: number): Promise<Record<string, unknown>> {
    return this.json("GET", `/users/${id}/budget`);
  }
  listKeys(userId: number): Promise<Page<AccessKey>> {
    return this.json("GET", `/users/${userId}/access-keys`);
  }
  issueKey(userId: number, body: Record<string, unknown> = {}): Promise<IssuedKey> {
    return this.json("POST", `/users/${userId}/access-keys`, { body });
  }

  // --- access keys
  updateKey(id: number, body: Record<string, unknown>): Promise<AccessKey> {
    return this.json("PATCH", `/access-keys/${id}`, { body });
  }
  revokeKey(id: number): Promise<unknown> {
    return this.json("DELETE", `/access-keys/${id}`);
  }
  rotateKey(id: number): Promise<IssuedKey> {
    return this.json("POST", `/access-keys/${id}/rotate`);
  }
  putBedrockKey(id: number, apiKey: string): Promise<{ registered: boolean }> {
    return this.json("PUT", `/access-keys/${id}/bedrock-key`, { body: { api_key: apiKey } });
  }
  deleteBedrockKey(id: number): Promise<{ registered: boolean }> {
    return this.json("DELETE", `/access-keys/${id}/bedrock-key`);
  }

  // --- teams
  listTeams(q: { limit?: number; offset?: number } = {}): Promise<Page<Team>> {
    return this.json("GET", "/teams", { query: q });
  }
  createTeam(body: Record<string, unknown>): Promise<Team> {
    return this.json("POST", "/teams", { body });
  }
  getTeam(id: number): Promise<Team> {
    return this.json("GET", `/teams/${id}`);
  }
  updateTeam(id: number, body: Record<string, unknown>): Promise<Team> {
    return this.json("PATCH", `/teams/${id}`, { body });
  }

  // --- usage
  usage(q: UsageQuery): Promise<UsageReport> {
    return this.json("GET", "/usage", { query: q });
  }
  topUsers(q: UsageQuery & { limit?: number }): Promise<Page<TopUser>> {
    return this.json("GET", "/usage/top-users", { query: q });
  }
  events(q: UsageQuery & { limit?: number; offset?: number }): Promise<Page<UsageEventRow>> {
    return this.json("GET", "/usage/events", { query: q });
  }
  /** The CSV of exactly what `events` filters, fetched with the Bearer header. */
  async exportCsv(q: UsageQuery): Promise<string> {
    const response = await this.raw("GET", "/usage/export.csv", { query: q });
    return response.text();
  }

  // --- pricing, circuits, audit
  listPrices(): Promise<Page<Price>> {
    return this.json("GET", "/pricing");
  }
  upsertPrice(body: Record<string, unknown>): Promise<Price> {
    return this.json("PUT", "/pricing", { body });
  }
  reloadPrices(): Promise<unknown> {
    return this.json("POST", "/pricing/reload");
  }
  listCircuits(): Promise<Page<Circuit>> {
    return this.json("GET", "/circuits");
  }
  resetCircuit(keyId: number): Promise<unknown> {
    return this.json("POST", `/circuits/${keyId}/reset`);
  }
  audit(q: { actor?: string; action?: string; target?: string; start?: string; end?: string; limit?: number; offset?: number }): Promise<Page<AuditEntry>> {
    return this.json("GET", "/audit", { query: q });
  }
}

async function toError(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || `The gateway answered ${response.status}.`;
  let field: string | null = null;
  try {
    const data = (await response.json()) as { error?: { code?: string; message?: string; field?: string | null } };
    if (data.error) {
      code = data.error.code ?? code;
      message = data.error.message ?? message;
      field = data.error.field ?? null;
    }
  } catch {
    // not JSON (a proxy's error page): keep the status line
  }
  return new ApiError(response.status, code, message, field);
}

/** The message a page shows for a failed call. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 403) return `Not allowed: ${error.message}`;
    return error.field ? `${error.message} (${error.field})` : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}
