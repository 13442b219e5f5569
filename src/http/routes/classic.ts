// POST /send-notification: the FastAPI notification service's endpoint, {recipient, subject, content},
// so its clients switch by changing a URL and adding an API key. It goes the durable path of
// POST /v1/emails (idempotency, sender domains, rate limit, retries) and answers in that service's shape.
import { Hono } from "hono";
import { classicNotificationSchema } from "../../core/schema";
import type * as z from "zod";
import type { AppEnv } from "../context";
import type { classicAcceptedSchema } from "../responses";
import { sendRateLimit } from "../middleware/send-rate-limit";
import { sendFromBody } from "../send";

export const classicRoutes = new Hono<AppEnv>().post("/", sendRateLimit(), async (c) => {
  const accepted = await sendFromBody(c, classicNotificationSchema, "notification");
  return c.json({ message: "Notification accepted for delivery", id: accepted.id } satisfies z.output<typeof classicAcceptedSchema>, 202);
});
