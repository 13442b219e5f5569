// `npm start`: a working Mailroom with no configuration — local D1 migrated, a development inbox to deliver
// into, `wrangler dev` wired to it, and a key plus curl commands to try it. Your .dev.vars or shell settings win.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, watch, writeFileSync } from "node:fs";
import path from "node:path";
import { parseEnv } from "node:util";
import { buildTemplates } from "./build-templates.mjs";
import { startInbox } from "./inbox.mjs";
import { applyMigrations, findFreePort, startWranglerDev } from "./wrangler-dev.mjs";

const ROOT = path.resolve(import.meta.dirname, "..");
const DEV_MAIL_FROM = "Mailroom Dev <noreply@mailroom.dev.test>";
const SMTP_KEYS = ["SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USER", "SMTP_PASS", "SMTP_HELO_NAME"];
const CONFIG_KEYS = [
  ...SMTP_KEYS,
  ...["SMTP_TIMEOUT_MS", "MAIL_FROM", "API_KEYS", "RETRY_BASE_DELAY_SECONDS", "RETRY_MAX_DELAY_SECONDS", "RETRY_WINDOW_SECONDS"],
  ...["DELIVERY_LEASE_SECONDS", "SWEEP_GRACE_SECONDS", "ENVIRONMENT", "WEBHOOK_RETRY_DELAYS_SECONDS", "BOUNCE_ADDRESS", "BOUNCE_SECRET", "DSN_NOTIFY_SUCCESS"],
];
/**
 * Local development recovers faster than production's defaults: a restart of wrangler dev drops the
 * in-memory queue, and the sweep (run every minute, as the Cron Trigger does in production) then finds
 * the lost mail after 30 s instead of 5 minutes; a claim left by a killed dev server expires after a minute.
 */
const DEV_DEFAULTS = { SWEEP_GRACE_SECONDS: "30", DELIVERY_LEASE_SECONDS: "60", ENVIRONMENT: "development" };
const SWEEP_EVERY_MS = 60_000;
const KEY_FILE = path.join(ROOT, ".wrangler", "mailroom-dev-api-key");
const BOUNCE_SECRET_FILE = path.join(ROOT, ".wrangler", "mailroom-dev-bounce-secret");
/** Reports to it come back through wrangler dev's local Email Routing entry (the inbox sends them). */
const DEV_BOUNCE_ADDRESS = "bounces@bounces.mailroom.dev.test";

/** What wrangler itself will read: .dev.vars, or else .env and .env.local. */
function readLocalSettings() {
  const files = existsSync(path.join(ROOT, ".dev.vars")) ? [".dev.vars"] : [".env", ".env.local"].filter((f) => existsSync(path.join(ROOT, f)));
  const vars = Object.assign({}, ...files.map((f) => parseEnv(readFileSync(path.join(ROOT, f), "utf8"))));
  return { files, vars };
}

/** Stable across restarts, so a curl you pasted earlier keeps working; .wrangler/ is git-ignored. */
function loadDevApiKey() {
  if (existsSync(KEY_FILE)) return readFileSync(KEY_FILE, "utf8").trim();
  const key = `mr_dev_${randomBytes(24).toString("hex")}`;
  mkdirSync(path.dirname(KEY_FILE), { recursive: true });
  writeFileSync(KEY_FILE, key + "\n", { mode: 0o600 });
  return key;
}

/** The signing secrets of the dev key's webhooks that point at `endpoint` (at most 100 webhooks looked at). */
async function webhookSecretsFor(endpoint, apiUrl, apiKey) {
  const headers = { Authorization: `Bearer ${apiKey}` };
  const list = await (await fetch(`${apiUrl}/v1/webhooks?limit=100`, { headers })).json();
  const ours = (list.data ?? []).filter((w) => w.endpoint === endpoint);
  return Promise.all(ours.map(async (w) => (await (await fetch(`${apiUrl}/v1/webhooks/${w.id}`, { headers })).json()).signing_secret));
}

/** Like the API key: kept in .wrangler/, so return paths of mail sent before a restart still verify. */
function loadDevBounceSecret() {
  if (existsSync(BOUNCE_SECRET_FILE)) return readFileSync(BOUNCE_SECRET_FILE, "utf8").trim();
  const secret = randomBytes(32).toString("hex");
  mkdirSync(path.dirname(BOUNCE_SECRET_FILE), { recursive: true });
  writeFileSync(BOUNCE_SECRET_FILE, secret + "\n", { mode: 0o600 });
  return secret;
}

/** An explicit port from the environment is used as is (0: any free one); otherwise the friendly default if it is free. */
const portFromEnv = (name, fallback) => {
  const port = Number(process.env[name] || fallback);
  return process.env[name] && port !== 0 ? port : findFreePort(port);
};

let inbox;
let wrangler;
let inboxWebhookSecrets = async () => [];
/** Where the inbox sends the reports it plays a relay for: wrangler dev, once it runs. */
const reportTarget = {};
let stopping = false;
async function shutdown(exitCode) {
  if (stopping) return;
  stopping = true;
  await wrangler?.stop();
  await inbox?.close();
  process.exit(exitCode);
}
process.on("SIGINT", () => shutdown(130));
process.on("SIGTERM", () => shutdown(143));
process.on("SIGHUP", () => shutdown(129));
// `kill <npm pid>` does not always reach us (npm may exit without forwarding it): when npm is gone, stop too.
const parentPid = process.ppid;
setInterval(() => process.ppid !== parentPid && shutdown(129), 1000).unref();

/**
 * What of wrangler dev's output reaches the console: nothing while it starts (its banner and bindings table
 * say nothing a newcomer must act on; a failure prints all of it), except its warnings and errors; after
 * that, everything but the lines of the readiness probe's own GET /healthz.
 */
function createWranglerOutputFilter() {
  let ready = false;
  let inNotice = false; // inside a "▲ [WARNING]" or "✘ [ERROR]" block, which ends at a blank line
  const probeLines = [/"path":"\/healthz"/, /\[wrangler:info\] GET \/healthz /];
  let partial = "";
  const passes = (line) => {
    const probe = probeLines.findIndex((pattern) => pattern.test(line));
    if (probe >= 0) return probeLines.splice(probe, 1) && false;
    if (ready) return true;
    inNotice = /\[(WARNING|ERROR)\]/.test(line) || (inNotice && line.trim() !== "");
    return inNotice;
  };
  return {
    write(chunk, stream) {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop();
      const shown = lines.filter(passes);
      if (shown.length) process[stream].write(shown.join("\n") + "\n");
    },
    started() {
      ready = true;
    },
  };
}

try {
  const applied = await applyMigrations();
  console.log(`mailroom: ${applied ? `applied ${applied} migration${applied === 1 ? "" : "s"} to the local D1 database` : "local D1 database up to date"} (.wrangler/state)`);

  const local = readLocalSettings();
  const shell = Object.fromEntries(CONFIG_KEYS.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]]));
  const isUserSet = (key) => key in local.vars || key in shell;
  // wrangler reads .dev.vars itself but not the shell, so shell settings go in as --var (which wins over files).
  const vars = { ...shell };
  const useInbox = !SMTP_KEYS.some(isUserSet);
  if (useInbox) {
    inbox = await startInbox({
      smtpPort: await portFromEnv("MAILROOM_INBOX_SMTP_PORT", 2525),
      httpPort: await portFromEnv("MAILROOM_INBOX_HTTP_PORT", 8025),
      // Known once wrangler dev runs and only with the dev key: the secrets to check deliveries' signatures with.
      webhookSecrets: () => inboxWebhookSecrets(),
      reportTo: reportTarget,
    });
    Object.assign(vars, { SMTP_HOST: "127.0.0.1", SMTP_PORT: String(inbox.smtpPort), SMTP_SECURITY: "none" });
  }
  if (!isUserSet("MAIL_FROM")) vars.MAIL_FROM = DEV_MAIL_FROM;
  if (useInbox && !isUserSet("BOUNCE_ADDRESS")) Object.assign(vars, { BOUNCE_ADDRESS: DEV_BOUNCE_ADDRESS, BOUNCE_SECRET: vars.BOUNCE_SECRET ?? loadDevBounceSecret() });
  for (const [key, value] of Object.entries(DEV_DEFAULTS)) if (!isUserSet(key)) vars[key] = value;
  let apiKey;
  if (!isUserSet("API_KEYS")) {
    apiKey = loadDevApiKey();
    vars.API_KEYS = `dev:${createHash("sha256").update(apiKey).digest("hex")}`;
  }

  // A template added or removed goes into src/templates/files.generated.ts at once; wrangler dev reloads
  // on that file, and on every template file it imports when one is edited.
  buildTemplates();
  watch(path.join(ROOT, "templates"), { recursive: true }, () => buildTemplates());

  const output = createWranglerOutputFilter();
  wrangler = await startWranglerDev({ port: await portFromEnv("PORT", 8787), vars, onOutput: output.write, sweepEveryMs: SWEEP_EVERY_MS });
  output.started();
  reportTarget.url = wrangler.url;
  wrangler.exited.then(({ code, signal }) => {
    if (stopping) return;
    console.error(`mailroom: wrangler dev stopped unexpectedly (${signal ?? `exit code ${code}`})`);
    shutdown(code || 1);
  });

  if (useInbox && apiKey) inboxWebhookSecrets = () => webhookSecretsFor(`http://127.0.0.1:${inbox.httpPort}/webhooks`, wrangler.url, apiKey);

  const source = [...local.files, ...(Object.keys(shell).length ? ["your shell"] : [])].join(", ");
  const key = apiKey ?? "<one of your keys from API_KEYS>";
  const auth = `-H "Authorization: Bearer ${key}"`;
  const body = JSON.stringify({ to: "you@example.com", subject: "Hello from Mailroom", text: "It works.", html: "<p>It <b>works</b>.</p>" });
  console.log(`
  Mailroom is running.

  API        ${wrangler.url}   (reference: ${wrangler.url}/docs)
  Templates  ${wrangler.url}/preview   (each template with its sample data, every locale)
  ${useInbox ? `Inbox      http://127.0.0.1:${inbox.httpPort}   (SMTP on 127.0.0.1:${inbox.smtpPort}; every mail lands here)` : `SMTP       your relay, from ${source} (no development inbox)`}
  API key    ${apiKey ? `${apiKey}   (dev key, kept in .wrangler/mailroom-dev-api-key)` : `your own, from API_KEYS in ${source}`}
  Settings   ${source ? `yours (${source}) take precedence over the development defaults` : "development defaults (create .dev.vars to use your own relay, see README)"}
  Sweep      every minute, as the Cron Trigger in production: mail whose queue job was lost (a restart) is sent again${
    useInbox ? `\n  Bounces    to ${vars.BOUNCE_ADDRESS}: mail to bounce-…@ is bounced a moment after the inbox took it, complain-…@ is complained about` : ""
  }

  Send a mail (prints the response and keeps the id in $ID):

    ID=$(curl -s ${wrangler.url}/v1/emails ${auth} -H "Content-Type: application/json" -d '${body}' | tee /dev/stderr | sed -E 's/.*"id":"([^"]*)".*/\\1/'); echo

  Then read its status (queued → sent within a second or two):

    curl -s ${wrangler.url}/v1/emails/$ID ${auth}
${
  useInbox
    ? `
  Have delivery events pushed to the inbox's webhook receiver (each shown at http://127.0.0.1:${inbox.httpPort}/webhooks, signature checked):

    curl -s ${wrangler.url}/v1/webhooks ${auth} -H "Content-Type: application/json" -d '${JSON.stringify({ endpoint: `http://127.0.0.1:${inbox.httpPort}/webhooks`, events: ["email.sent", "email.delivery_delayed", "email.bounced", "email.failed"] })}'
`
    : ""
}
  Stop with Ctrl-C.
`);
} catch (error) {
  // The message carries wrangler's own output (the real cause), which was not shown while it ran.
  console.error(`mailroom: could not start: ${error instanceof Error ? error.message : error}`);
  await shutdown(1);
}
