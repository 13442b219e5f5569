// When a message should go: `scheduled_at` as Resend takes it (ISO 8601 with an offset), at most 30
// days ahead. A time that has already come means "now". Pure: the caller passes the clock.
import * as z from "zod";

/** How far ahead a send may be scheduled. */
export const MAX_SCHEDULE_AHEAD_MS = 30 * 86_400_000;

/** `2026-12-01T09:00:00Z`, `2026-12-01T10:00:00.5+01:00`: a date, a time and an offset, nothing less. */
const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;

export const scheduledAtSchema = z
  .string()
  .refine((value) => ISO_WITH_OFFSET.test(value) && !Number.isNaN(Date.parse(value)), "must be an ISO 8601 date and time with an offset, e.g. 2026-12-01T09:00:00Z")
  .transform((value) => new Date(Date.parse(value)));

export type Schedule = { ok: true; at: Date | null } | { ok: false; message: string };

/** The time to send at, null for "now"; or why the time cannot be accepted. */
export function resolveSchedule(requested: Date | undefined, now: Date): Schedule {
  if (!requested || requested.getTime() <= now.getTime()) return { ok: true, at: null };
  if (requested.getTime() > now.getTime() + MAX_SCHEDULE_AHEAD_MS) return { ok: false, message: "must be at most 30 days ahead" };
  return { ok: true, at: requested };
}
