// The hash over the dashboard's source inputs, written next to the committed export
// (out/.source-sha256) by `npm run build`; tests/test_dashboard.py recomputes it the same
// way and fails when the export is stale. Keep the two definitions identical:
// sha256 over, for each file in sorted relative-path order, "<path>\0<sha256 hex>\n".
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DIRS = ["app", "components", "lib", "public"];
const FILES = [
  "package.json",
  "package-lock.json",
  "next.config.ts",
  "postcss.config.mjs",
  "tsconfig.json",
];

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else out.push(path);
  }
}

export function sourceHash() {
  const files = [];
  for (const d of DIRS) {
    try {
      walk(join(ROOT, d), files);
    } catch (e) {
      if (e.code !== "ENOENT") throw e;
    }
  }
  for (const f of FILES) files.push(join(ROOT, f));
  const rel = files.map((f) => relative(ROOT, f).split(sep).join("/")).sort();
  const total = createHash("sha256");
  for (const r of rel) {
    const digest = createHash("sha256").update(readFileSync(join(ROOT, r))).digest("hex");
    total.update(`${r}\0${digest}\n`);
  }
  return total.digest("hex");
}

const mode = process.argv[2];
const target = join(ROOT, "out", ".source-sha256");
if (mode === "write") {
  writeFileSync(target, sourceHash() + "\n");
} else if (mode === "check") {
  const have = readFileSync(target, "utf8").trim();
  if (have !== sourceHash()) {
    console.error("dashboard/out is stale: run `npm --prefix dashboard run build`");
    process.exit(1);
  }
}
