// The send rate limit in tests: higher than wrangler.toml's 100 per 10 s, because the suite sends more than
// that with its one main key (the chaos run alone posts 300); the rate-limit test uses a key of its own.
export const TEST_SEND_RATE_LIMIT = 500;
