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
  id: number;
  username: string;
  role: Role;
}

export interface User {
  id: number;
  name: string;
  description: string | null;
  status: "active" | "inactive";
  team_id: number | null;
  team: string | null;
  monthly_budget_usd: string | null;
  alert_thresholds: number[];
  allowed_models: string[] | null;
  active_keys: number;
  created_at: string;
  deactivated_at: string | null;
  /** On the detail answer (GET /users/{id}) only. */
  routing?: Routing;
  /** The quota state of each of the user's keys the plan reported one for (detail only). */
  quota?: QuotaState[];
}

export interface UserCreate {
  name: string;
  description?: string | null;
  team_id?: number | null;
  monthly_budget_usd?: string | null;
  alert_thresholds?: number[];
  allowed_models?: string[] | null;
}

export type UserUpdate = Partial<UserCreate> & { routing?: Routing };

export interface Budget {
  user_id: number;
  monthly_budget_usd: string | null;
  alert_thresholds: number[];
  spent_usd: string;
  remaining_usd: string | null;
  period_start: string;
  resets_at: string;
  team: { id: number; name: string; monthly_budget_usd: string | null; spent_usd: string; remaining_usd: string | null } | null;
}

export interface Team {
  id: number;
  name: string;
  description: string | null;
  monthly_budget_usd: string | null;
  alert_thresholds: number[];
  allowed_models: string[] | null;
  members: number;
  created_at: string;
  /** On the detail answer (GET /teams/{id}) only. */
  routing?: Routing;
}

export interface TeamCreate {
  name: string;
  description?: string | null;
  monthly_budget_usd?: string | null;
  alert_thresholds?: number[];
  allowed_models?: string[] | null;
}

export interface AccessKey {
  id: number;
  user_id: number;
  user_name: string;
  prefix: string;
  status: "active" | "revoked";
  bedrock_region: string | null;
  bedrock_model: string | null;
  bedrock_default_credentials: boolean;
  bedrock_key_registered: boolean;
  rpm_limit: number | null;
  created_at: string;
  revoked_at: string | null;
  expires_at: string | null;
  replaced_by: number | null;
  /** On the detail answer (GET /access-keys/{id}) only. */
  routing?: Routing;
  /** null until the plan reported a quota for this key (detail only). */
  quota?: QuotaState | null;
}

export interface IssuedKey extends AccessKey {
  raw_key: string;
}

export interface RotatedKey extends IssuedKey {
  replaces: number;
  old_key_expires_at: string;
}

export interface KeyUpdate {
  bedrock_region?: string | null;
  bedrock_model?: string | null;
  bedrock_default_credentials?: boolean;
  rpm_limit?: number | null;
  routing?: Routing;
}

export type Granularity = "minute" | "hour" | "day" | "week" | "month";

export interface UsageTotals {
  requests: number;
  plan_requests: number;
  bedrock_requests: number;
  fallback_requests: number;
  error_requests: number;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  cost_usd: string;
  /** The same tokens at the provider's list price: for plan rows, what the plan delivered. */
  list_cost_usd: string;
}

export interface UsageBucket extends UsageTotals {
  bucket_start: string;
}

export interface ModelCost extends UsageTotals {
  model: string;
}

export interface UsageReport {
  granularity: Granularity;
  start: string;
  end: string;
  report_tz: string;
  buckets: UsageBucket[];
  totals: UsageTotals;
  by_model: ModelCost[];
}

export interface TopUser {
  user_id: number;
  user_name: string;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: string;
  list_cost_usd?: string;
  share: number;
}

export interface UsageEventRow {
  request_id: string;
  created_at: string;
  user_id: number;
  user_name: string;
  access_key_id: number;
  access_key_prefix: string;
  endpoint: string;
  provider: "plan" | "bedrock" | "none";
  is_fallback: boolean;
  model: string | null;
  upstream_model: string | null;
  status: number;
  error_class: string | null;
  stream: boolean;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_creation_5m_tokens: number;
  cache_creation_1h_tokens: number;
  cache_read_input_tokens: number;
  cost_usd: string;
  latency_ms: number;
  ttfb_ms: number | null;
  session_id: string | null;
}

/** Where a team's, user's or key's requests go first; null inherits (key → user → team → default). */
export type Routing = "plan_first" | "bedrock_only" | null;

export interface QuotaWindow {
  status: string | null;
  utilization: number | null;
  reset: string | null;
}

/** One key's plan quota as last seen in the plan's answers (`GET /admin/quota`). */
export interface QuotaState {
  access_key_id: number;
  prefix: string;
  user: string;
  unified_status: string | null;
  unified_reset: string | null;
  windows: Record<string, QuotaWindow>;
  routed_to_bedrock: boolean;
  routed_until: string | null;
  seen_at: string;
}

export interface ModelMapping {
  anthropic_name: string;
  bedrock_model_id: string;
  source: "default" | "operator";
  updated_at: string | null;
}

export interface UnmappedModel {
  requested: string;
  served_by: string;
  requests: number;
  first_seen: string;
  last_seen: string;
}

/** One Claude Code session of a user (`AttributionGroup`): its requests summed. */
export interface UserSession {
  /** The session id; "" groups the requests that came without the header. */
  group_key: string;
  user: string;
  session_id: string | null;
  parent_agent_id: string | null;
  requests: number;
  fallback_requests: number;
  error_requests: number;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  /** null when none of its requests could be priced. */
  cost_usd: string | null;
  first_seen: string;
  last_seen: string;
}

export interface Price {
  model: string;
  region: string;
  input: string;
  output: string;
  cache_write_5m: string;
  cache_write_1h: string;
  cache_read: string;
  effective_date: string;
}

export type PriceInput = Omit<Price, "region" | "effective_date"> & { region?: string; effective_date?: string };

export interface Circuit {
  access_key_id: number;
  prefix: string;
  user_name: string;
  state: "closed" | "open" | "half_open";
  failures: number;
  opened_at: string | null;
  probe_started_at: string | null;
  last_error_class: string | null;
  updated_at: string;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  actor_kind: "admin" | "cli" | "system" | "anonymous";
  action: string;
  target_type: string;
  target_id: string | null;
  changes: Record<string, unknown>;
  client_address: string | null;
}

export interface AuditQuery {
  actor?: string;
  action?: string;
  target_type?: string;
  target_id?: string;
  start?: string;
  end?: string;
  limit?: number;
  offset?: number;
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

export type Query = { [name: string]: string | number | boolean | null | undefined } | object;

export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query) as [string, unknown][]) {
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
  granularity?: Granularity;
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
  listUsers(q: { search?: string; team?: number | string; status?: string; limit?: number; offset?: number } = {}): Promise<Page<User>> {
    return this.json("GET", "/users", { query: q });
  }
  createUser(body: UserCreate): Promise<User> {
    return this.json("POST", "/users", { body });
  }
  getUser(id: number): Promise<User> {
    return this.json("GET", `/users/${id}`);
  }
  updateUser(id: number, body: UserUpdate): Promise<User> {
    return this.json("PATCH", `/users/${id}`, { body });
  }
  deactivateUser(id: number): Promise<User> {
    return this.json("POST", `/users/${id}/deactivate`);
  }
  deleteUser(id: number): Promise<void> {
    return this.json("DELETE", `/users/${id}`);
  }
  getBudget(id: number): Promise<Budget> {
    return this.json("GET", `/users/${id}/budget`);
  }
  setBudget(id: number, body: { monthly_budget_usd: string | null; alert_thresholds?: number[] }): Promise<Budget> {
    return this.json("PUT", `/users/${id}/budget`, { body });
  }
  listKeys(userId: number, q: { limit?: number; offset?: number } = {}): Promise<Page<AccessKey>> {
    return this.json("GET", `/users/${userId}/access-keys`, { query: q });
  }
  issueKey(userId: number, body: { bedrock_region?: string | null; bedrock_model?: string | null; rpm_limit?: number | null } = {}): Promise<IssuedKey> {
    return this.json("POST", `/users/${userId}/access-keys`, { body });
  }

  // --- access keys
  /** One key with its routing and quota state (KeyDetail). */
  getKey(id: number): Promise<AccessKey> {
    return this.json("GET", `/access-keys/${id}`);
  }
  updateKey(id: number, body: KeyUpdate): Promise<AccessKey> {
    return this.json("PATCH", `/access-keys/${id}`, { body });
  }
  revokeKey(id: number): Promise<AccessKey> {
    return this.json("DELETE", `/access-keys/${id}`);
  }
  rotateKey(id: number): Promise<RotatedKey> {
    return this.json("POST", `/access-keys/${id}/rotate`);
  }
  putBedrockKey(id: number, apiKey: string): Promise<{ access_key_id: number; registered: boolean }> {
    return this.json("PUT", `/access-keys/${id}/bedrock-key`, { body: { api_key: apiKey } });
  }
  deleteBedrockKey(id: number): Promise<{ access_key_id: number; registered: boolean }> {
    return this.json("DELETE", `/access-keys/${id}/bedrock-key`);
  }

  // --- teams
  listTeams(q: { search?: string; limit?: number; offset?: number } = {}): Promise<Page<Team>> {
    return this.json("GET", "/teams", { query: q });
  }
  createTeam(body: TeamCreate): Promise<Team> {
    return this.json("POST", "/teams", { body });
  }
  getTeam(id: number): Promise<Team> {
    return this.json("GET", `/teams/${id}`);
  }
  updateTeam(id: number, body: Partial<TeamCreate> & { routing?: Routing }): Promise<Team> {
    return this.json("PATCH", `/teams/${id}`, { body });
  }
  deleteTeam(id: number): Promise<void> {
    return this.json("DELETE", `/teams/${id}`);
  }

  // --- usage
  usage(q: UsageQuery): Promise<UsageReport> {
    return this.json("GET", "/usage", { query: q });
  }
  topUsers(q: Omit<UsageQuery, "user" | "key" | "granularity" | "status"> & { order_by?: "cost" | "requests" | "tokens"; limit?: number; offset?: number }): Promise<Page<TopUser>> {
    return this.json("GET", "/usage/top-users", { query: q });
  }
  events(q: Omit<UsageQuery, "granularity"> & { limit?: number; offset?: number }): Promise<Page<UsageEventRow>> {
    return this.json("GET", "/usage/events", { query: q });
  }
  /** The CSV of exactly what `events` filters, fetched with the Bearer header (never a token in the URL). */
  async exportCsv(q: Omit<UsageQuery, "granularity">): Promise<string> {
    const response = await this.raw("GET", "/usage/export.csv", { query: q });
    return response.text();
  }

  // --- quota, model map, sessions
  listQuota(q: { user?: string; limit?: number; offset?: number } = {}): Promise<Page<QuotaState>> {
    return this.json("GET", "/quota", { query: q });
  }
  listModels(q: { limit?: number; offset?: number } = {}): Promise<Page<ModelMapping>> {
    return this.json("GET", "/models", { query: q });
  }
  setModel(name: string, bedrockModelId: string): Promise<ModelMapping> {
    return this.json("PUT", `/models/${encodeURIComponent(name)}`, { body: { bedrock_model_id: bedrockModelId } });
  }
  /** Answers the mapping that was removed. */
  deleteModel(name: string): Promise<ModelMapping> {
    return this.json("DELETE", `/models/${encodeURIComponent(name)}`);
  }
  unmappedModels(q: { since?: string; limit?: number; offset?: number } = {}): Promise<Page<UnmappedModel>> {
    return this.json("GET", "/models/unmapped", { query: q });
  }
  userSessions(userId: number, q: { days?: number; limit?: number; offset?: number } = {}): Promise<Page<UserSession>> {
    return this.json("GET", `/users/${userId}/sessions`, { query: q });
  }

  // --- pricing, circuits, audit
  listPrices(q: { limit?: number; offset?: number } = {}): Promise<Page<Price>> {
    return this.json("GET", "/pricing", { query: q });
  }
  upsertPrice(body: PriceInput): Promise<Price> {
    return this.json("PUT", "/pricing", { body });
  }
  reloadPrices(): Promise<{ rows: number }> {
    return this.json("POST", "/pricing/reload");
  }
  listCircuits(q: { limit?: number; offset?: number } = {}): Promise<Page<Circuit>> {
    return this.json("GET", "/circuits", { query: q });
  }
  resetCircuit(keyId: number): Promise<{ access_key_id: number; state: "closed" }> {
    return this.json("POST", `/circuits/${keyId}/reset`);
  }
  audit(q: AuditQuery): Promise<Page<AuditEntry>> {
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
