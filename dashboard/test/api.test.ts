// The API client against a real HTTP server on loopback that answers in the admin API's
// wire format (JSON bodies, the {"error": {...}} shape, CSV).
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { after, before, test } from "node:test";
import { ApiClient, ApiError, describeError, queryString } from "../lib/api.ts";

interface Seen { method: string; url: string; headers: IncomingMessage["headers"]; body: string }
const seen: Seen[] = [];
let server: Server;
let base = "";

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/admin/auth/login") {
        const { username, password } = JSON.parse(body);
        if (username === "root" && password === "pw") return json(200, { access_token: "tok-1", token_type: "bearer", expires_in: 86400 });
        return json(401, { error: { code: "unauthorized", message: "Wrong username or password.", field: null } });
      }
      if (req.headers.authorization !== "Bearer tok-1") return json(401, { error: { code: "unauthorized", message: "Token expired.", field: null } });
      if (url.pathname === "/admin/me") return json(200, { id: 1, username: "root", role: "admin" });
      if (url.pathname === "/admin/users" && req.method === "POST") {
        const parsed = JSON.parse(body);
        if (!parsed.name) return json(422, { error: { code: "validation_failed", message: "name is required", field: "name" } });
        return json(201, { id: 7, name: parsed.name });
      }
      if (url.pathname === "/admin/users") return json(200, { items: [], total: 0, limit: 50, offset: 0 });
      if (url.pathname === "/admin/users/7") return json(204, null);
      if (url.pathname === "/admin/usage/export.csv") {
        res.writeHead(200, { "content-type": "text/csv" });
        return res.end("request_id,created_at\nabc,2026-12-01T00:00:00Z\n");
      }
      if (url.pathname === "/admin/pricing") {
        res.writeHead(502, { "content-type": "text/html" });
        return res.end("<html>bad gateway</html>");
      }
      return json(404, { error: { code: "not_found", message: "No such thing", field: null } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address && typeof address === "object");
  base = `http://127.0.0.1:${address.port}`;
});

after(() => server.close());

test("login sends JSON without an Authorization header and returns the token", async () => {
  const client = new ApiClient({ baseUrl: base, token: () => "should-not-be-sent" });
  const result = await client.login("root", "pw");
  assert.equal(result.access_token, "tok-1");
  const req = seen.at(-1)!;
  assert.equal(req.method, "POST");
  assert.equal(req.headers.authorization, undefined);
  assert.equal(req.headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(req.body), { username: "root", password: "pw" });
});

test("the token goes as a Bearer header and never into the URL", async () => {
  const client = new ApiClient({ baseUrl: base, token: () => "tok-1" });
  await client.listUsers({ search: "al ice", status: "active", limit: 25, offset: 50 });
  const req = seen.at(-1)!;
  assert.equal(req.headers.authorization, "Bearer tok-1");
  assert.equal(req.url, "/admin/users?search=al+ice&status=active&limit=25&offset=50");
  assert.ok(!req.url.includes("tok-1"));
  await client.exportCsv({ user: 3, provider: "bedrock" });
  assert.ok(!seen.at(-1)!.url.includes("tok-1"));
});

test("a 401 calls onUnauthorized (back to login) and throws the server's message", async () => {
  let called = 0;
  const client = new ApiClient({ baseUrl: base, token: () => "stale", onUnauthorized: () => called++ });
  await assert.rejects(client.me(), (e: unknown) => e instanceof ApiError && e.status === 401 && e.message === "Token expired.");
  assert.equal(called, 1);
});

test("a wrong password at login does not count as an expired session", async () => {
  let called = 0;
  const client = new ApiClient({ baseUrl: base, token: () => null, onUnauthorized: () => called++ });
  await assert.rejects(client.login("root", "nope"), (e: unknown) => e instanceof ApiError && e.status === 401);
  assert.equal(called, 0);
});

test("a validation error keeps its code and the field it names", async () => {
  const client = new ApiClient({ baseUrl: base, token: () => "tok-1" });
  await assert.rejects(client.createUser({ name: "" }), (e: unknown) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 422);
    assert.equal(e.code, "validation_failed");
    assert.equal(e.field, "name");
    assert.equal(describeError(e), "name is required (name)");
    return true;
  });
});

test("204 answers resolve to undefined; CSV comes back as text", async () => {
  const client = new ApiClient({ baseUrl: base, token: () => "tok-1" });
  assert.equal(await client.deleteUser(7), undefined);
  assert.equal(seen.at(-1)!.method, "DELETE");
  assert.equal(await client.exportCsv({}), "request_id,created_at\nabc,2026-12-01T00:00:00Z\n");
});

test("a non-JSON error page becomes an ApiError with the status", async () => {
  const client = new ApiClient({ baseUrl: base, token: () => "tok-1" });
  await assert.rejects(client.listPrices(), (e: unknown) => e instanceof ApiError && e.status === 502 && e.code === "http_502");
});

test("an unreachable gateway is a network_error, not a crash", async () => {
  const client = new ApiClient({ baseUrl: "http://127.0.0.1:1", token: () => "tok-1" });
  await assert.rejects(client.me(), (e: unknown) => e instanceof ApiError && e.code === "network_error");
});

test("empty query values are left out of the query string", () => {
  assert.equal(queryString({ a: "", b: undefined, c: null, d: 0, e: "x y" }), "?d=0&e=x+y");
  assert.equal(queryString({}), "");
});
