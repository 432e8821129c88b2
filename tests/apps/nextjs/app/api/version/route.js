import { readFileSync } from "node:fs";

export const dynamic = "force-dynamic";

// The release's VERSION file, read per request: one build serves every
// version the trial deploys.
export function GET() {
  return new Response(readFileSync("VERSION", "utf8").trim(), {
    headers: { "content-type": "text/plain" },
  });
}
