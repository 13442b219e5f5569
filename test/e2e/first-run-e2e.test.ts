// `npm start` from a fresh clone, as a newcomer sees it: the tracked files in a temp dir (no .wrangler/, no
// .dev.vars), the project's node_modules linked in. Before the first request it prints the migration line,
// the URLs, the key and the curl — and nothing else; a second start says the database is up to date.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stopProcessGroup } from "../../scripts/wrangler-dev.mjs";

const ROOT = path.resolve(import.meta.dirname, "../..");
const MIGRATIONS = readdirSync(path.join(ROOT, "migrations")).filter((f) => f.endsWith(".sql")).length;
/** Settings npm start would take from the shell; a fresh clone in a clean shell has none. */
const SETTINGS = /^(SMTP_|MAIL_FROM$|API_KEYS$|RETRY_|WEBHOOK_|BOUNCE_|DSN_|DELIVERY_LEASE_SECONDS$|SWEEP_GRACE_SECONDS$|ENVIRONMENT$|PORT$|MAILROOM_)/;

let clone: string;

beforeAll(() => {
  clone = mkdtempSync(path.join(tmpdir(), "mailroom-first-run-"));
  const files = execFileSync("git", ["ls-files", "-z"], { cwd: ROOT, encoding: "utf8" }).split("\0").filter(Boolean);
  for (const file of files) {
    mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
    cpSync(path.join(ROOT, file), path.join(clone, file));
  }
  symlinkSync(path.join(ROOT, "node_modules"), path.join(clone, "node_modules"));
});

afterAll(() => rmSync(clone, { recursive: true, force: true }));

interface Started {
  child: ChildProcess;
  output: () => string;
  waitFor: (pattern: RegExp) => Promise<string>;
}

/** `node scripts/dev.mjs` (what `npm start` runs) in the clone, every port from the OS. */
function start(): Started {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !SETTINGS.test(name)));
  const child = spawn(process.execPath, ["scripts/dev.mjs"], {
    cwd: clone,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    // (worker-configuration.d.ts types process.env as the Worker sees it, every var set; here they are not)
    env: { ...env, PORT: "0", MAILROOM_INBOX_SMTP_PORT: "0", MAILROOM_INBOX_HTTP_PORT: "0" } as unknown as NodeJS.ProcessEnv,
  });
  let text = "";
  const waiters = new Set<() => void>();
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      text += chunk;
      for (const check of waiters) check();
    });
  }
  const waitFor = (pattern: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const exited = () => reject(new Error(`npm start exited before printing ${pattern}:\n${text}`));
      const check = () => {
        const match = pattern.exec(text);
        if (!match) return;
        waiters.delete(check);
        child.off("exit", exited);
        resolve(match[0]);
      };
      child.once("exit", exited);
      waiters.add(check);
      check();
    });
  return { child, output: () => text, waitFor };
}

/** Every line npm start may print before the first request (the ready banner), in order of appearance. */
const BANNER_LINES = [
  /^mailroom: applied \d+ migrations to the local D1 database \(\.wrangler\/state\)$/,
  /^mailroom: local D1 database up to date \(\.wrangler\/state\)$/,
  /^ {2}Mailroom is running\.$/,
  /^ {2}API {8}http:\/\/127\.0\.0\.1:\d+ {3}\(reference: http:\/\/127\.0\.0\.1:\d+\/docs\)$/,
  /^ {2}Templates {2}http:\/\/127\.0\.0\.1:\d+\/preview /,
  /^ {2}Inbox {6}http:\/\/127\.0\.0\.1:\d+ /,
  /^ {2}API key {4}mr_dev_[0-9a-f]{48} /,
  /^ {2}Settings {3}development defaults /,
  /^ {2}Sweep {6}every minute/,
  /^ {2}Bounces {4}to bounces@bounces\.mailroom\.dev\.test: /,
  /^ {2}Send a mail /,
  /^ {4}ID=\$\(curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/emails -H "Authorization: Bearer mr_dev_/,
  /^ {2}Then read its status /,
  /^ {4}curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/emails\/\$ID -H "Authorization: Bearer mr_dev_/,
  /^ {2}Have delivery events pushed to the inbox's webhook receiver /,
  /^ {4}curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/webhooks -H "Authorization: Bearer mr_dev_/,
  /^ {2}Stop with Ctrl-C\.$/,
];

async function runUntilFirstRequest() {
  const run = start();
  try {
    await run.waitFor(/Stop with Ctrl-C\.\n/);
    const api = /API {8}(http:\/\/127\.0\.0\.1:\d+)/.exec(run.output())![1]!;
    const key = /API key {4}(mr_dev_[0-9a-f]{48})/.exec(run.output())![1]!;
    // Whatever comes next is printed for this request (or was printed before it, and so counts as before).
    const before = run.output();
    const res = await fetch(`${api}/v1/emails`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ to: "newcomer@example.com", subject: "First run", text: "Hello." }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await run.waitFor(/\[wrangler:info\] POST \/v1\/emails 202/);
    const after = run.output().slice(before.length);
    return { before, after, id };
  } finally {
    await stopProcessGroup(run.child, { graceMs: 10_000 });
  }
}

describe("npm start from a fresh clone", () => {
  it("prints the migration line, the URLs, the key and the curl, and nothing else before the first request", async () => {
    const { before, after, id } = await runUntilFirstRequest();
    const lines = before.split("\n").filter((line) => line.trim() !== "");
    expect(lines[0]).toBe(`mailroom: applied ${MIGRATIONS} migrations to the local D1 database (.wrangler/state)`);
    for (const line of lines) expect(BANNER_LINES.some((pattern) => pattern.test(line)), `unexpected line before the first request: ${line}`).toBe(true);
    expect(lines).toHaveLength(BANNER_LINES.length - 1); // one of the two migration lines
    // The request's own lines follow, and only they: not the readiness probe's, not wrangler's banner.
    expect(after).toContain(`"email_id":"${id}"`);
    expect(after).not.toMatch(/\/healthz|wrangler \d|Binding/);
  });

  it("says the database is up to date on the next start", async () => {
    const { before } = await runUntilFirstRequest();
    expect(before.split("\n").find((line) => line.trim() !== "")).toBe("mailroom: local D1 database up to date (.wrangler/state)");
  });

  it("prints a curl that registers the inbox's webhook receiver: a mail's events show there, their signatures verified", async () => {
    const run = start();
    try {
      await run.waitFor(/Stop with Ctrl-C\.\n/);
      const output = run.output();
      const inbox = /Inbox {6}(http:\/\/127\.0\.0\.1:\d+)/.exec(output)![1]!;
      const register = /^ {4}(curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/webhooks .*)$/m.exec(output)![1]!;
      const created = JSON.parse(execFileSync("sh", ["-c", register], { encoding: "utf8" })) as { object: string; id: string };
      expect(created).toMatchObject({ object: "webhook" });
      const send = /^ {4}ID=\$\((curl -s .*) \| tee \/dev\/stderr/m.exec(output)![1]!;
      const { id } = JSON.parse(execFileSync("sh", ["-c", send], { encoding: "utf8" })) as { id: string };
      const deadline = Date.now() + 20_000;
      let deliveries: { type: string; verified: boolean | null; payload: { data: { email_id: string } } }[] = [];
      while (!deliveries.some((d) => d.payload.data.email_id === id)) {
        if (Date.now() > deadline) throw new Error(`no webhook delivery in the inbox:\n${run.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        deliveries = (await (await fetch(`${inbox}/api/webhooks`)).json()) as typeof deliveries;
      }
      expect(deliveries.find((d) => d.payload.data.email_id === id)).toMatchObject({ type: "email.sent", verified: true });
      const page = await (await fetch(`${inbox}/webhooks`)).text();
      expect(page).toContain("email.sent");
      expect(page).toContain("verifies");
    } finally {
      await stopProcessGroup(run.child, { graceMs: 10_000 });
    }
  });
});
