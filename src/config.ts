// Mailroom's settings, read once from wrangler vars and secrets and checked with zod, so a bad deploy
// fails loudly with every wrong variable named instead of misbehaving later.
import * as z from "zod";
import type { Mailbox } from "./core/address";
import { parseDkimKey, type DkimKey } from "./core/dkim-key";
import { mailboxSchema } from "./core/schema";
import { attemptAllowanceMs } from "./core/time-budget";
import type { TransportName } from "./transport/transport";
import { SOURCE_ENV } from "./usage";

export type SmtpSecurity = "tls" | "starttls" | "none";

export interface ApiKeyEntry {
  name: string;
  /** SHA-256 of the key, as 32 bytes. */
  digest: Uint8Array;
  /** The domains the key may send from (lower case); undefined: any. */
  senderDomains?: string[];
}

export interface Config {
  /** TRANSPORT: the ways mail leaves, in the order they are tried (see delivery/transports.ts). */
  transports: TransportName[];
  /** The relay; set when TRANSPORT lists smtp. */
  smtp?: {
    host: string;
    port: number;
    security: SmtpSecurity;
    user?: string;
    pass?: string;
    /** The name Mailroom gives in EHLO. */
    heloName: string;
    /** Deadline for connecting, each write and each whole reply. */
    timeoutMs: number;
  };
  mailFrom: Mailbox;
  apiKeys: ApiKeyEntry[];
  retry: {
    baseDelaySeconds: number;
    maxDelaySeconds: number;
    /** A transient failure is retried until this long after the message was due; then it fails. */
    windowSeconds: number;
  };
  /** How long a delivery attempt's claim on a message lasts; no attempt waits on the relay past it. */
  leaseSeconds: number;
  /** SMTP sessions a queue consumer invocation runs at once (Workers allow 6 open connections). */
  smtpSessions: number;
  /**
   * SMTP_MAX_CONNECTIONS and SMTP_MAX_PER_SECOND: limits on the relay for the whole deployment, kept by
   * its pacer (a Durable Object); a connection's lease lasts leaseMs unless renewed. Undefined: no limits.
   */
  pacing?: { maxConnections?: number; maxPerSecond?: number; leaseMs: number };
  /** The sweeper requeues a pending message once it is overdue by this long (and again after as long). */
  sweepGraceSeconds: number;
  /** Message bodies and attachments are deleted this many days after acceptance, once the message is settled. */
  retentionDays: number;
  /**
   * BOUNCE_ADDRESS and BOUNCE_SECRET: each message's envelope sender is a return path of its own under the
   * bounce address (VERP), and DSNs are asked for; undefined: MAIL_FROM is the envelope sender, as before.
   */
  bounce?: { address: string; secret: string; notifySuccess: boolean };
  /** DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY: every message is signed (RFC 6376); undefined: unsigned. */
  dkim?: { domain: string; selector: string; key: DkimKey };
  /** Delays between a webhook event's attempts (WEBHOOK_RETRY_DELAYS_SECONDS): one attempt more than delays. */
  webhookRetryDelaysSeconds: number[];
  /** ENVIRONMENT=development (npm start): the template preview pages are served; webhooks may be http:// and loopback. */
  development: boolean;
}

/** Resend's schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
export const DEFAULT_WEBHOOK_RETRY_DELAYS_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 36000];

/** Backoff when the settings themselves cannot be read, so no configured policy exists. */
export const DEFAULT_RETRY = { baseDelaySeconds: 30, maxDelaySeconds: 3600 } as const;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join("; ")}`);
    this.name = "ConfigError";
  }

  /** The names of the settings at fault (each problem starts with one), never their values. */
  get settings(): string[] {
    return [...new Set(this.problems.map((problem) => problem.split(":")[0]!))];
  }
}

const DEFAULT_PORTS: Record<SmtpSecurity, number> = { tls: 465, starttls: 587, none: 25 };
const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[?::1\]?)$/i;

/** Empty strings count as unset: wrangler.toml declares every var, operators fill in some. */
const optionalString = z.preprocess((v) => (v === "" || v === null ? undefined : v), z.string().optional());
const intInRange = (min: number, max: number) =>
  z.preprocess(
    (v) => (v === "" || v === undefined ? undefined : Number(v)),
    z.number().int(`must be a whole number`).min(min, `must be at least ${min}`).max(max, `must be at most ${max}`).optional(),
  );

/** A domain name in ASCII (IDNs as punycode): dot-separated labels of letters, digits and inner hyphens. */
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** API_KEYS: comma-separated `name:sha256hex`, or `name:sha256hex:example.com|example.org` for a key that may send only from those domains. */
const apiKeyEntries = z.string().transform((value, ctx): ApiKeyEntry[] => {
  const entries: ApiKeyEntry[] = [];
  for (const [index, raw] of value.split(",").map((s) => s.trim()).filter(Boolean).entries()) {
    const match = /^([A-Za-z0-9_.-]{1,64}):([0-9a-fA-F]{64})(?::(.*))?$/.exec(raw);
    if (!match) {
      // Never echo the entry: it might be a plain key pasted by mistake.
      ctx.addIssue({ code: "custom", message: `entry ${index + 1} is not name:sha256hex (64 hex digits) or name:sha256hex:domain|domain` });
      continue;
    }
    const [, name, hex, domainList] = match as unknown as [string, string, string, string | undefined];
    const senderDomains = domainList?.split("|").map((d) => d.trim().toLowerCase());
    if (senderDomains && !senderDomains.every((d) => DOMAIN.test(d))) {
      ctx.addIssue({ code: "custom", message: `entry ${index + 1} (${name}): its sender domains must be domain names separated by |` });
      continue;
    }
    if (entries.some((e) => e.name === name)) {
      ctx.addIssue({ code: "custom", message: `entry ${index + 1} repeats the name ${name}; each key needs its own` });
      continue;
    }
    const digest = Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
    // The same key twice: only the first entry would ever match, and the second's sender domains never apply.
    const twin = entries.find((e) => e.digest.every((byte, i) => byte === digest[i]));
    if (twin) {
      ctx.addIssue({ code: "custom", message: `entry ${index + 1} (${name}) has the same key digest as ${twin.name}; each key must be different` });
      continue;
    }
    entries.push({ name, digest, ...(senderDomains ? { senderDomains } : {}) });
  }
  if (entries.length === 0 && ctx.issues.length === 0) ctx.addIssue({ code: "custom", message: "no API keys configured" });
  return entries;
});

/** TRANSPORT's names, trimmed and lower-cased; undefined when unset. Read by the schema and by the one check that must run even when other settings are wrong. */
function transportNames(value: unknown): string[] | undefined {
  if (value === undefined || value === "") return undefined;
  return String(value).split(",").map((name) => name.trim().toLowerCase());
}

const envSchema = z.object({
  TRANSPORT: z.preprocess(
    transportNames,
    z
      .array(z.enum(["smtp", "cloudflare"], { error: "must be smtp, cloudflare, or both in order (smtp,cloudflare)" }))
      .refine((names) => new Set(names).size === names.length, "names a transport twice")
      .refine((names) => names.indexOf("cloudflare") < 0 || names.indexOf("cloudflare") === names.length - 1, "cloudflare must come last (it has no session to fail at: its refusals come per mail, so nothing after it would ever be tried)")
      .optional(),
  ),
  SMTP_HOST: optionalString,
  SMTP_PORT: intInRange(1, 65535),
  SMTP_SECURITY: z.preprocess((v) => (v === "" ? undefined : v), z.enum(["tls", "starttls", "none"], { error: "must be tls, starttls or none" }).default("starttls")),
  SMTP_USER: optionalString,
  SMTP_PASS: optionalString,
  SMTP_HELO_NAME: optionalString,
  SMTP_TIMEOUT_MS: intInRange(100, 600_000),
  MAIL_FROM: z.string({ error: "required" }).min(1, "required").pipe(mailboxSchema),
  API_KEYS: z.string({ error: "required" }).min(1, "required").pipe(apiKeyEntries),
  RETRY_BASE_DELAY_SECONDS: intInRange(0, 43_200),
  RETRY_MAX_DELAY_SECONDS: intInRange(0, 43_200),
  RETRY_WINDOW_SECONDS: intInRange(1, 30 * 86_400),
  DELIVERY_LEASE_SECONDS: intInRange(5, 43_200),
  SMTP_SESSIONS: intInRange(1, 6),
  SMTP_MAX_CONNECTIONS: intInRange(1, 10_000),
  SMTP_MAX_PER_SECOND: z.preprocess(
    (v) => (v === "" || v === undefined ? undefined : Number(v)),
    z.number({ error: "must be a number" }).positive("must be more than 0").max(10_000, "must be at most 10000").optional(),
  ),
  PACING_LEASE_SECONDS: intInRange(2, 600),
  SWEEP_GRACE_SECONDS: intInRange(0, 86_400),
  RETENTION_DAYS: intInRange(1, 3650),
  BOUNCE_ADDRESS: z.preprocess((v) => (v === "" ? undefined : v), z.string().pipe(mailboxSchema).optional()),
  BOUNCE_SECRET: optionalString,
  DSN_NOTIFY_SUCCESS: z.preprocess((v) => (v === "" ? undefined : v), z.enum(["true", "false"], { error: "must be true or false" }).optional()),
  WEBHOOK_RETRY_DELAYS_SECONDS: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .regex(/^\d{1,5}(,\d{1,5}){0,19}$/, "must be 1 to 20 whole numbers of seconds, separated by commas")
      .transform((v) => v.split(",").map(Number))
      .refine((delays) => delays.every((d) => d <= 43_200), "each delay must be at most 43200 (a queue delay's limit, 12 h)")
      .optional(),
  ),
  DKIM_DOMAIN: optionalString,
  DKIM_SELECTOR: optionalString,
  DKIM_PRIVATE_KEY: optionalString,
  ENVIRONMENT: z.preprocess((v) => (v === "" ? undefined : v), z.enum(["production", "development"], { error: "must be production or development" }).default("production")),
});

export function parseConfig(env: Record<string, unknown>): Config {
  const parsed = envSchema.safeParse(env);
  // The relay is required only when TRANSPORT lists it (as the default does); said first, as before.
  const hostMissing = (transportNames(env.TRANSPORT) ?? ["smtp"]).includes("smtp") && (env.SMTP_HOST === undefined || env.SMTP_HOST === null || env.SMTP_HOST === "") ? ["SMTP_HOST: required"] : [];
  if (!parsed.success) {
    throw new ConfigError([...hostMissing, ...parsed.error.issues.map((i) => `${i.path.map(String).join(".")}: ${i.message}`)]);
  }
  const e = parsed.data;
  const problems: string[] = [...hostMissing];
  const transports: TransportName[] = e.TRANSPORT ?? ["smtp"];
  if (transports.includes("cloudflare") && typeof (env.EMAIL as { send?: unknown } | undefined)?.send !== "function") {
    problems.push('TRANSPORT: cloudflare needs the send_email binding named EMAIL ([[send_email]] name = "EMAIL" in wrangler.toml)');
  }
  if (e.SMTP_HOST && e.SMTP_SECURITY === "none" && !LOOPBACK_HOST.test(e.SMTP_HOST)) {
    problems.push("SMTP_SECURITY: none is only allowed for loopback hosts (localhost, 127.0.0.1, ::1)");
  }
  if (e.SMTP_USER && !e.SMTP_PASS) problems.push("SMTP_PASS: required when SMTP_USER is set");
  if (e.SMTP_PASS && !e.SMTP_USER) problems.push("SMTP_USER: required when SMTP_PASS is set");
  const leaseSeconds = e.DELIVERY_LEASE_SECONDS ?? 900;
  const timeoutMs = e.SMTP_TIMEOUT_MS ?? 30_000;
  if (attemptAllowanceMs(leaseSeconds) < timeoutMs) {
    // No attempt could wait for the relay's verdict on the final dot: every mail would retry until its window ends.
    problems.push(
      `DELIVERY_LEASE_SECONDS: ${leaseSeconds} s leaves an attempt ${attemptAllowanceMs(leaseSeconds) / 1000} s (less the time kept for recording), shorter than one SMTP_TIMEOUT_MS (${timeoutMs} ms) wait for the reply to the final dot; raise it or lower SMTP_TIMEOUT_MS`,
    );
  }
  const development = e.ENVIRONMENT === "development";
  if (!development && e.RETRY_BASE_DELAY_SECONDS === 0) {
    problems.push("RETRY_BASE_DELAY_SECONDS: 0 is only allowed with ENVIRONMENT=development (a relay that is down would be retried in a tight loop)");
  }
  if (!development && e.RETRY_MAX_DELAY_SECONDS === 0) {
    problems.push("RETRY_MAX_DELAY_SECONDS: 0 is only allowed with ENVIRONMENT=development (a relay that is down would be retried in a tight loop)");
  }
  if (e.BOUNCE_ADDRESS && !e.BOUNCE_SECRET) problems.push("BOUNCE_SECRET: required when BOUNCE_ADDRESS is set (it authenticates the return paths)");
  if (e.BOUNCE_SECRET && e.BOUNCE_SECRET.length < 32) problems.push("BOUNCE_SECRET: must be at least 32 characters (npm run key prints a random one)");
  if (e.BOUNCE_ADDRESS && (e.BOUNCE_ADDRESS.name || e.BOUNCE_ADDRESS.address.split("@")[0]!.includes("+"))) {
    problems.push("BOUNCE_ADDRESS: must be a bare address (local@domain) whose local part has no +: Mailroom adds +<token>");
  } else if (e.BOUNCE_ADDRESS && e.BOUNCE_ADDRESS.address.split("@")[0]!.length > 21) {
    // RFC 5321 §4.5.3.1.1: a local part is at most 64 octets, and +<token> takes 43 of them.
    problems.push("BOUNCE_ADDRESS: its local part must be at most 21 characters (the return path adds 43, and RFC 5321 allows 64)");
  }
  const webhookRetryDelaysSeconds = e.WEBHOOK_RETRY_DELAYS_SECONDS ?? DEFAULT_WEBHOOK_RETRY_DELAYS_SECONDS;
  if (!development && webhookRetryDelaysSeconds.includes(0)) {
    problems.push("WEBHOOK_RETRY_DELAYS_SECONDS: 0 is only allowed with ENVIRONMENT=development (an endpoint that is down would be retried in a tight loop)");
  }
  const dkim = dkimSettings(e, problems);
  const pacing = transports.includes("smtp") && (e.SMTP_MAX_CONNECTIONS !== undefined || e.SMTP_MAX_PER_SECOND !== undefined)
    ? {
        ...(e.SMTP_MAX_CONNECTIONS !== undefined ? { maxConnections: e.SMTP_MAX_CONNECTIONS } : {}),
        ...(e.SMTP_MAX_PER_SECOND !== undefined ? { maxPerSecond: e.SMTP_MAX_PER_SECOND } : {}),
        leaseMs: (e.PACING_LEASE_SECONDS ?? 30) * 1000,
      }
    : undefined;
  if (pacing && typeof (env.PACER as { getByName?: unknown } | undefined)?.getByName !== "function") {
    problems.push(`${pacing.maxConnections !== undefined ? "SMTP_MAX_CONNECTIONS" : "SMTP_MAX_PER_SECOND"}: pacing needs the Durable Object binding named PACER (see wrangler.toml)`);
  }
  if (problems.length) throw new ConfigError(problems);
  const fromDomain = e.MAIL_FROM.address.split("@")[1]!;
  return {
    transports,
    ...(transports.includes("smtp")
      ? {
          smtp: {
            host: e.SMTP_HOST!,
            port: e.SMTP_PORT ?? DEFAULT_PORTS[e.SMTP_SECURITY],
            security: e.SMTP_SECURITY,
            user: e.SMTP_USER,
            pass: e.SMTP_PASS,
            heloName: e.SMTP_HELO_NAME ?? fromDomain,
            timeoutMs,
          },
        }
      : {}),
    mailFrom: e.MAIL_FROM,
    apiKeys: e.API_KEYS,
    retry: {
      baseDelaySeconds: e.RETRY_BASE_DELAY_SECONDS ?? DEFAULT_RETRY.baseDelaySeconds,
      maxDelaySeconds: e.RETRY_MAX_DELAY_SECONDS ?? DEFAULT_RETRY.maxDelaySeconds,
      windowSeconds: e.RETRY_WINDOW_SECONDS ?? 72 * 3600,
    },
    leaseSeconds,
    smtpSessions: e.SMTP_SESSIONS ?? 5,
    ...(pacing ? { pacing } : {}),
    sweepGraceSeconds: e.SWEEP_GRACE_SECONDS ?? 300,
    retentionDays: e.RETENTION_DAYS ?? 30,
    ...(e.BOUNCE_ADDRESS && e.BOUNCE_SECRET ? { bounce: { address: e.BOUNCE_ADDRESS.address, secret: e.BOUNCE_SECRET, notifySuccess: e.DSN_NOTIFY_SUCCESS === "true" } } : {}),
    ...(dkim ? { dkim } : {}),
    webhookRetryDelaysSeconds,
    development,
  };
}


/** RFC 6376 §3.1: a selector is one or more dot-separated labels. */
const SELECTOR = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** The DKIM settings, all three or none; what is wrong with them goes to `problems` (never the key itself). */
function dkimSettings(e: z.infer<typeof envSchema>, problems: string[]): Config["dkim"] {
  const given = { DKIM_DOMAIN: e.DKIM_DOMAIN, DKIM_SELECTOR: e.DKIM_SELECTOR, DKIM_PRIVATE_KEY: e.DKIM_PRIVATE_KEY };
  const missing = Object.entries(given).filter(([, value]) => value === undefined).map(([name]) => name);
  if (missing.length === 3) return undefined;
  for (const name of missing) problems.push(`${name}: required when ${Object.keys(given).filter((n) => !missing.includes(n)).join(" and ")} ${missing.length === 1 ? "are" : "is"} set (DKIM needs all three)`);
  if (e.DKIM_DOMAIN !== undefined && !DOMAIN.test(e.DKIM_DOMAIN)) problems.push("DKIM_DOMAIN: must be a domain name (IDNs as punycode)");
  if (e.DKIM_SELECTOR !== undefined && !SELECTOR.test(e.DKIM_SELECTOR)) problems.push("DKIM_SELECTOR: must be one or more DNS labels separated by dots");
  let key: DkimKey | undefined;
  if (e.DKIM_PRIVATE_KEY !== undefined) {
    try {
      key = parseDkimKey(e.DKIM_PRIVATE_KEY);
    } catch (error) {
      problems.push(`DKIM_PRIVATE_KEY: ${(error as Error).message}`);
    }
  }
  if (missing.length > 0 || !key || problems.some((p) => p.startsWith("DKIM_"))) return undefined;
  return { domain: e.DKIM_DOMAIN!.toLowerCase(), selector: e.DKIM_SELECTOR!.toLowerCase(), key };
}

const cache = new WeakMap<object, Config>();

/**
 * parseConfig, once per env object (the runtime hands the same env to every request of an isolate; a
 * request's copy with metered bindings is keyed by the env it was made from).
 */
export function getConfig(env: Env): Config {
  const key = (env as { [SOURCE_ENV]?: Env })[SOURCE_ENV] ?? env;
  let config = cache.get(key);
  if (!config) {
    config = parseConfig(key as unknown as Record<string, unknown>);
    cache.set(key, config);
  }
  return config;
}
