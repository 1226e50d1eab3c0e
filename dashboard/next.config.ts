import type { NextConfig } from "next";
// @ts-expect-error: a plain .mjs module without types
import { sourceHash } from "./scripts/source-hash.mjs";

// A static export served by the gateway under /dashboard/ (gateway/dashboard.py).
// trailingSlash: every page is `<route>/index.html`, so the gateway maps a client route
// to its file without guessing.
const config: NextConfig = {
  output: "export",
  basePath: "/dashboard",
  trailingSlash: true,
  // The build id is the source hash, so rebuilding unchanged sources gives the same export
  // (no churn in the committed dashboard/out).
  generateBuildId: async () => sourceHash().slice(0, 20),
  images: { unoptimized: true },
  poweredByHeader: false,
  reactStrictMode: true,
};

export default config;
