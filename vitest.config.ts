// Two test projects: "workers" runs unit and integration tests inside workerd (real local D1 and
// Queues, real SMTP servers from the global setup); "e2e" runs in Node and drives a real `wrangler dev`.
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/**
 * The send rate limit in tests: higher than wrangler.toml's 100 per 10 s, because the suite sends more than
 * that with its one main key (the chaos run alone posts 300); the rate-limit test uses a key of its own.
 */
const TEST_SEND_RATE_LIMIT = 500;

const migrations = await readD1Migrations(new URL("./migrations", import.meta.url).pathname);

/**
 * name:SHA-256 of the API keys the integration tests send (test/helpers/api.ts): "test-key", the one most
 * tests use; "other-key", another client; "scoped-key", which may send only from mailroom.test and
 * example.org; "limited-key", which the rate-limit test uses up; "webhooks-key", whose webhooks the webhook
 * tests register (so that other tests' mail makes no events for them).
 */
const TEST_API_KEYS = [
  "tests:62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef",
  "other:580843d03d2216ff1a275d0991bad66e4d1af871171d929e9de604b7959f9bca",
  "scoped:5cebef33ff96c82119865fdc964ee6aa7b3df8d7c22936614b210fb454ea2188:mailroom.test|Example.ORG",
  "limited:f33b2500796d61f96eeef0f5331ddc40c17e434aff139f4d9e00bfe75170d87a",
  "hooks:a1011f8bb8d3200d4c5dbe07a9e92d9a0e94e58624ea43cffef9b6c7a8d4ae59",
].join(",");

export default defineConfig({
  test: {
    // The service's own JSON log lines are noise in a green run; a failing test still shows its output.
    silent: "passed-only",
    reporters: ["default", "./test/helpers/summary-reporter.ts"],
    projects: [
      {
        plugins: [
          cloudflareTest(async ({ inject }) => ({
            main: "./src/index.ts",
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                TEST_MIGRATIONS: migrations,
                TEST_SEND_RATE_LIMIT,
                SMTP_HOST: "127.0.0.1",
                // The plain inbox behind a switchable gate, so a test can take the relay down and back up.
                SMTP_PORT: String(inject("smtp").gate.smtpPort),
                SMTP_SECURITY: "none",
                MAIL_FROM: "Mailroom Tests <noreply@mailroom.test>",
                API_KEYS: TEST_API_KEYS,
                // Retries at once (allowed only in development, as the local webhook receivers will be).
                RETRY_BASE_DELAY_SECONDS: "0",
                ENVIRONMENT: "development",
                SMTP_TIMEOUT_MS: "5000",
                // Webhook retries at once, three of them (4 attempts in all).
                WEBHOOK_RETRY_DELAYS_SECONDS: "0,0,0",
              },
              // wrangler.toml's unrestricted EMAIL, and two restricted ones whose refusals the local binding
              // makes on demand: a recipient not allowed (permanent) and a sender not allowed (transient).
              email: {
                send_email: [
                  { name: "EMAIL" },
                  { name: "EMAIL_ONE_RECIPIENT", allowed_destination_addresses: ["allowed@example.com"] },
                  { name: "EMAIL_OTHER_SENDER", allowed_sender_addresses: ["someone-else@mailroom.test"] },
                ],
              },
              // wrangler.toml's window (10 s), with the tests' limit.
              ratelimits: { SEND_RATE_LIMIT: { namespace_id: "1001", simple: { limit: TEST_SEND_RATE_LIMIT, period: 10 } } },
              queueConsumers: {
                "mailroom-outbox": { maxBatchTimeout: 0, maxRetries: 2, deadLetterQueue: "mailroom-dead-letter" },
                "mailroom-dead-letter": { maxBatchTimeout: 0 },
                "mailroom-webhooks": { maxBatchTimeout: 0, maxRetries: 2, deadLetterQueue: "mailroom-webhooks-dead-letter" },
                "mailroom-webhooks-dead-letter": { maxBatchTimeout: 0 },
              },
            },
          })),
        ],
        test: {
          name: "workers",
          // One pool worker for all files instead of one per file: starting a pool worker goes through
          // miniflare's synchronous fetcher, which now and then fails an assertion on this 2-core
          // machine (seen once in ~25 runs); one start instead of sixteen makes that 16× rarer, and
          // the run faster. The files share one isolate, so they restore any spies they install.
          isolate: false,
          include: ["test/unit/**/*.test.ts", "test/integration/**/*.test.ts"],
          globalSetup: ["./test/helpers/global-setup.ts"],
          setupFiles: ["./test/helpers/quiet-logs.ts", "./test/helpers/apply-migrations.ts"],
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts", "test/static/**/*.test.ts"],
          environment: "node",
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
