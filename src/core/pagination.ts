// Resend's list pagination (`PaginationOptions`): `limit` 1–100 (default 20), and `after` or `before` the id
// of an item of the list (not both; the cursor itself is not in the page). Lists are newest first.
import * as z from "zod";

export interface PageRequest {
  limit: number;
  after?: string;
  before?: string;
}

export const paginationSchema = z
  .object({
    limit: z
      .string()
      .regex(/^\d{1,3}$/, "must be a whole number from 1 to 100")
      .transform(Number)
      .refine((n) => n >= 1 && n <= 100, "must be a whole number from 1 to 100")
      .optional(),
    after: z.string().min(1, "must be an id from the list").max(64, "must be an id from the list").optional(),
    before: z.string().min(1, "must be an id from the list").max(64, "must be an id from the list").optional(),
  })
  .strict()
  .refine((q) => !(q.after && q.before), { message: "give after or before, not both", path: ["before"] })
  .transform((q): PageRequest => ({ limit: q.limit ?? 20, ...(q.after ? { after: q.after } : {}), ...(q.before ? { before: q.before } : {}) }));
