// POST /send-notification: the FastAPI notification service's endpoint, {recipient, subject, content},
// so its clients switch by changing a URL and adding an API key. It goes the durable path of
// POST /v1/emails (idempotency, sender domains, rate limit, retries) and answers in that service's shape.
import { Hono } from "hono";
import { classicNotificationSchema, validate } from "../../core/schema";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { readJsonBody } from "../json-body";
import { sendRateLimit } from "../middleware/send-rate-limit";
import { sendRequest } from "../send";

export const classicRoutes = new Hono<AppEnv>().post("/", sendRateLimit(), async (c) => {
  const body = await readJsonBody(c);
  const validated = validate(classicNotificationSchema, body);
  if (!validated.ok) throw new ApiError("validation_error", "the request is not a valid notification", validated.issues);
  const { accepted, replayed } = await sendRequest(c, body, validated.value);
  if (replayed) c.header("Idempotent-Replayed", "true");
  c.header("Location", `/v1/emails/${accepted.id}`);
  return c.json({ message: "Notification accepted for delivery", id: accepted.id }, 202);
});
