// POST /send-notification, the FastAPI service's endpoint, through the real API, queue and SMTP server:
// an API key is required, the content arrives as the text body with the request's subject, the answer
// is {message, id}, and the message is the same durable one GET /v1/emails/{id} reports on.
import { describe, expect, it } from "vitest";
import { API_KEY, SCOPED_KEY, api, messageRowsFor, postCounted, uniqueRecipient, waitForMail } from "../helpers/api";

const classic = (json: unknown, key: string | null = API_KEY, headers: Record<string, string> = {}) =>
  api("/send-notification", { method: "POST", key, headers, json });

describe("POST /send-notification", () => {
  it("accepts {recipient, subject, content} with 202 {message, id} and delivers the content as the text body", async () => {
    const recipient = uniqueRecipient("classic");
    const res = await classic({ recipient, subject: "新用户注册通知", content: "Welcome aboard, Jane!\nYour account is ready." });
    expect(res.status).toBe(202);
    const body = await res.json<{ message: string; id: string }>();
    expect(body).toEqual({ message: "Notification accepted for delivery", id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(res.headers.get("Location")).toBe(`/v1/emails/${body.id}`);
    const [mail, ...more] = await waitForMail(recipient);
    expect(more).toHaveLength(0);
    expect(mail).toMatchObject({ subject: "新用户注册通知", envelope: { from: "noreply@mailroom.test", to: [recipient] } });
    expect(mail!.text.trim()).toBe("Welcome aboard, Jane!\nYour account is ready.");
    const view = await (await api(`/v1/emails/${body.id}`)).json<{ status: string; to: string[] }>();
    expect(view).toMatchObject({ status: "sent", to: [recipient] });
  });

  it("needs an API key, like everything that sends", async () => {
    const recipient = uniqueRecipient("classicnokey");
    const res = await classic({ recipient, subject: "x", content: "x" }, null);
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toBe("Bearer");
    expect(await messageRowsFor(recipient)).toBe(0);
  });

  it.each([
    ["no recipient", { recipient: undefined, subject: "x", content: "x" }, "recipient"],
    ["a malformed recipient", { recipient: "not an address", subject: "x", content: "x" }, "recipient"],
    ["a line break in the subject", { subject: "x\r\nBcc: a@evil.example", content: "x" }, "subject"],
    ["no content", { subject: "x" }, "content"],
    ["a field the old service never had", { subject: "x", content: "x", cc: "a@example.com" }, "(body)"],
  ])("refuses %s with 422 naming the field, nothing stored or queued", async (_name, fields, path) => {
    const recipient = uniqueRecipient("classicbad");
    const json = { recipient, ...fields };
    const { res, body, enqueued } = await postCountedTo("/send-notification", json);
    expect(res.status).toBe(422);
    expect(body.error.issues.map((i: { path: string }) => i.path)).toContain(path);
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(recipient)).toBe(0);
  });

  it("keeps a scoped key to its sender domains (MAIL_FROM here is one of them) and honours Idempotency-Key", async () => {
    const recipient = uniqueRecipient("classicidem");
    const key = `classic-${crypto.randomUUID()}`;
    const first = await classic({ recipient, subject: "Once", content: "x" }, SCOPED_KEY, { "Idempotency-Key": key });
    const again = await classic({ recipient, subject: "Once", content: "x" }, SCOPED_KEY, { "Idempotency-Key": key });
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect((await again.json<{ id: string }>()).id).toBe((await first.json<{ id: string }>()).id);
    expect(await messageRowsFor(recipient)).toBe(1);
  });
});

const postCountedTo = (path: string, json: unknown) => postCounted(JSON.stringify(json), { path });
