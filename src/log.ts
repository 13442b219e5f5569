// Structured logs: one JSON object per line, for Workers Logs / Logpush. Redaction lives here, so no
// caller can leak a recipient, a body or a secret by forgetting to scrub it.

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/** Field names whose values are message content or secrets: never written. */
const REDACTED_FIELDS = new Set([
  "subject", "text", "html", "body", "content", "data", "attachments", "headers",
  "password", "pass", "smtp_pass", "api_key", "api_keys", "authorization", "token", "secret", "signing_secret", "payload",
]);
/** Field names that hold recipients: written masked. */
const ADDRESS_FIELDS = new Set(["to", "cc", "bcc", "from", "reply_to", "recipient", "recipients"]);

/** `jane@example.com` → `j***@example.com`; anything that is not an address → `***`. */
export function maskAddress(address: string): string {
  const at = address.lastIndexOf("@");
  if (at < 1) return "***";
  const rest = address.slice(at + 1);
  const end = rest.search(/[>\s]/);
  const domain = end < 0 ? rest : rest.slice(0, end);
  const local = address.slice(0, at).replace(/^.*</, "").trim();
  return `${local.slice(0, 1) || "*"}***@${domain}`;
}

/**
 * A run of characters that can belong to an address inside free text (relay replies quote recipients). Each
 * run is matched once, whole: linear in the text (a pattern with "@" in the middle backtracked on long runs
 * without one, such as a 16 KB path).
 */
const TEXT_RUN = /[^\s<>"'(),;:]+/g;

/** A run with an "@" that has something before and after it, as "x@y" needs: masked whole. */
function maskText(text: string): string {
  return text.replace(TEXT_RUN, (run) => {
    const at = run.indexOf("@", 1); // the first "@" with something before it
    return at > 0 && at < run.length - 1 ? maskAddress(run) : run;
  });
}

function redactField(key: string, value: unknown): unknown {
  const name = key.toLowerCase();
  if (REDACTED_FIELDS.has(name)) return "[redacted]";
  if (ADDRESS_FIELDS.has(name)) {
    if (Array.isArray(value)) return value.map((v) => maskAddress(String(v)));
    return typeof value === "string" ? maskAddress(value) : "[redacted]";
  }
  if (typeof value === "string") return maskText(value);
  if (value instanceof Error) return { name: value.name, message: maskText(value.message) };
  return value;
}

export function createLogger(base: LogFields = {}, write: (line: string) => void = console.log): Logger {
  const emit = (level: LogLevel, msg: string, fields: LogFields = {}): void => {
    const entry: LogFields = { level, msg: maskText(msg), time: new Date().toISOString() };
    for (const [key, value] of Object.entries({ ...base, ...fields })) {
      if (value !== undefined) entry[key] = redactField(key, value);
    }
    write(JSON.stringify(entry));
  };
  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    child: (fields) => createLogger({ ...base, ...fields }, write),
  };
}
