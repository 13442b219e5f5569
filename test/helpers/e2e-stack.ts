// The local stack the e2e tests drive, as `npm start` runs it: a development inbox (optionally behind a
// relay gate), migrated local D1 state in a temp dir, and the options for a real `wrangler dev` that
// reads nothing of the developer's own settings. Each test file starts (and may kill) wrangler itself.
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { startInbox, type Inbox, type InboxOptions } from "../../scripts/inbox.mjs";
import { applyMigrations, type WranglerDevOptions } from "../../scripts/wrangler-dev.mjs";
import { startRelayGate, type RelayGate } from "./relay-gate";

export interface Stack {
  inbox: Inbox;
  /** Present when asked for: the gate between wrangler dev and the inbox. */
  gate?: RelayGate;
  apiKey: string;
  /** For startWranglerDev; add to them as a test needs. */
  options: WranglerDevOptions;
  close(): Promise<void>;
}

export async function createStack({ withGate = false, vars = {}, inbox: inboxOptions = {} }: { withGate?: boolean; vars?: Record<string, string>; inbox?: InboxOptions } = {}): Promise<Stack> {
  const stateDir = await mkdtemp(path.join(tmpdir(), "mailroom-e2e-"));
  // Read instead of .dev.vars/.env, so a developer's own relay settings never reach these tests.
  const envFile = path.join(stateDir, "e2e.env");
  await writeFile(envFile, "# empty on purpose: every setting comes from --var\n");
  // Wrangler only adds the shell's variables when asked to; make sure it is not.
  const env = { CLOUDFLARE_INCLUDE_PROCESS_ENV: "false" };
  const inbox = await startInbox({ httpPort: null, ...inboxOptions });
  const gate = withGate ? await startRelayGate(inbox.smtpPort) : undefined;
  await applyMigrations({ persistTo: stateDir, env });
  const apiKey = `e2e-${crypto.randomUUID()}`;
  return {
    inbox,
    gate,
    apiKey,
    options: {
      persistTo: stateDir,
      envFile,
      env,
      vars: {
        SMTP_HOST: "127.0.0.1",
        SMTP_PORT: String(gate?.port ?? inbox.smtpPort),
        SMTP_SECURITY: "none",
        MAIL_FROM: "Mailroom E2E <noreply@mailroom.test>",
        API_KEYS: `e2e:${createHash("sha256").update(apiKey).digest("hex")}`,
        SMTP_TIMEOUT_MS: "5000",
        ...vars,
      },
    },
    async close() {
      await gate?.close();
      await inbox.close();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** Calls the API of a running wrangler dev with the stack's key (or `key: null` for none). */
export function callApi(baseUrl: string, apiKey: string, pathname: string, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  const { key = apiKey, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (key !== null) headers.set("Authorization", `Bearer ${key}`);
  return fetch(`${baseUrl}${pathname}`, { ...rest, headers });
}
