// Bundle-size budget: builds the Worker the way `wrangler deploy` would (--dry-run, offline) and fails
// when the gzipped bundle grows past the budget. Cold starts and the 3 MiB free-plan limit care.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

// 64 KiB until templates came (mustache, the shipped templates), 96 with the OpenAPI document (79.6 used);
// 128 since the email() handler: postal-mime, the MIME parser reports are read with, is about 25 KiB of it
// (its HTML entity table the most), webhooks, reports and suppressions most of the rest (121.9 used);
// 144 since the second transport, DKIM and pacing (the Email Service transport and its error table, the
// DKIM signer and key reader, the relay pacer and its Durable Object: 7.7 KiB together, 129.6 used).
const BUDGET_KIB = Number(process.env.MAILROOM_BUNDLE_BUDGET_KIB ?? 144);
const outdir = mkdtempSync(join(tmpdir(), "mailroom-bundle-"));
try {
  const build = spawnSync("node_modules/.bin/wrangler", ["deploy", "--dry-run", "--outdir", outdir], {
    encoding: "utf8",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });
  if (build.status !== 0) {
    console.error(build.stdout, build.stderr);
    throw new Error(`wrangler deploy --dry-run failed with exit code ${build.status}`);
  }
  const files = readdirSync(outdir).filter((f) => f.endsWith(".js") || f.endsWith(".mjs"));
  let raw = 0;
  let gzipped = 0;
  for (const file of files) {
    const bytes = readFileSync(join(outdir, file));
    raw += bytes.length;
    gzipped += gzipSync(bytes, { level: 9 }).length;
  }
  const kib = (n) => (n / 1024).toFixed(1);
  console.log(`bundle: ${files.join(", ")} — ${kib(raw)} KiB raw, ${kib(gzipped)} KiB gzipped (budget ${BUDGET_KIB} KiB gzipped)`);
  if (gzipped > BUDGET_KIB * 1024) {
    console.error(`bundle-size check failed: ${kib(gzipped)} KiB gzipped is over the ${BUDGET_KIB} KiB budget`);
    process.exitCode = 1;
  } else {
    console.log("bundle-size check passed");
  }
} finally {
  rmSync(outdir, { recursive: true, force: true });
}
