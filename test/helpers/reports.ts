// Hands a raw report to the Worker's real email() handler as Email Routing would, with return paths on
// (BOUNCES), and says what it rejected, if anything. Shared by the report and suppression tests.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import mailroom from "../../src/index";

export const BOUNCES = { BOUNCE_ADDRESS: "bounces@bounce.mailroom.test", BOUNCE_SECRET: "a-test-secret-of-at-least-32-characters" };
export const bounce = { bounceAddress: BOUNCES.BOUNCE_ADDRESS, secret: BOUNCES.BOUNCE_SECRET };

export interface ReportOptions {
  /** Env overrides (a refusing DB, no BOUNCE_ADDRESS). */
  overrides?: Partial<Record<keyof Env, unknown>>;
  /** The SMTP sender it came from. */
  from?: string;
  /** What the sender declared as its size (default: its real size). */
  rawSize?: number;
}

export async function handReport(raw: string, to: string, { overrides = {}, from = "MAILER-DAEMON@relay.example", rawSize }: ReportOptions = {}): Promise<{ rejected?: string }> {
  const body = new TextEncoder().encode(raw);
  const outcome: { rejected?: string } = {};
  const message = {
    from,
    to,
    raw: new ReadableStream({ start: (c) => (c.enqueue(body), c.close()) }),
    rawSize: rawSize ?? body.byteLength,
    headers: new Headers(),
    canBeForwarded: false,
    setReject: (reason: string) => void (outcome.rejected = reason),
    forward: () => Promise.reject(new Error("not forwarded")),
    reply: () => Promise.reject(new Error("not replied")),
  } as unknown as ForwardableEmailMessage;
  const ctx = createExecutionContext();
  await (mailroom as ExportedHandler<Env>).email!(message, { ...env, ...BOUNCES, ...overrides } as Env, ctx);
  await waitOnExecutionContext(ctx);
  return outcome;
}
