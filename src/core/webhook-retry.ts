// What one webhook delivery attempt means: a 2xx ends it; 410 Gone disables the webhook at once; anything
// else (another status, a redirect, which is not followed, no answer in time) is retried on the schedule
// until it is used up, then the event is failed for that endpoint. A 429 or 503 with Retry-After waits as
// long as it asks, though never longer than the schedule's longest delay, and uses no extra attempt.

export type WebhookAnswer = { status: number; retryAfter: string | null } | { status: 0; error: string };

export type WebhookVerdict =
  | { kind: "success" }
  | { kind: "retry"; delaySeconds: number }
  | { kind: "failed" }
  /** 410: the receiver says the endpoint is gone: the webhook is disabled. */
  | { kind: "gone" };

/** An HTTP date as RFC 9110 §5.6.7 says to send one (IMF-fixdate). */
const IMF_FIXDATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** Retry-After as seconds from `now`: delay-seconds or an HTTP date (RFC 9110 §10.2.3); undefined if unreadable. */
export function retryAfterSeconds(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Number(text);
  if (!IMF_FIXDATE.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** The verdict on attempt `attempt` (from 1) of an event, under the schedule `delays`. */
export function judgeWebhookAttempt(answer: WebhookAnswer, attempt: number, delays: number[], now: number): WebhookVerdict {
  if (answer.status >= 200 && answer.status < 300) return { kind: "success" };
  if (answer.status === 410) return { kind: "gone" };
  if (attempt > delays.length) return { kind: "failed" };
  let delaySeconds = delays[attempt - 1]!;
  if ((answer.status === 429 || answer.status === 503) && "retryAfter" in answer) {
    const asked = retryAfterSeconds(answer.retryAfter, now);
    if (asked !== undefined) delaySeconds = Math.min(Math.max(delaySeconds, asked), Math.max(...delays));
  }
  return { kind: "retry", delaySeconds };
}
