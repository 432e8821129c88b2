import { readFileSync } from "node:fs";

export const dynamic = "force-dynamic";

export function GET() {
  const broken = readFileSync("VERSION", "utf8").trim() === "broken";
  return new Response(broken ? "database unreachable" : "ok", {
    status: broken ? 500 : 200,
  });
}
