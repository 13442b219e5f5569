// test/helpers/quiet-logs.ts runs before every test file, in one isolate: each run after the first must
// keep the relay the first found (vitest's console.log), never take its own buffer for it, or a failing
// test in any file but the first would show none of its log lines.
import { expect, it } from "vitest";

const first = globalThis.__mailroomRelay;
// @ts-expect-error a second instance of the setup file, as the next test file gets
await import("../helpers/quiet-logs.ts?again");

it("keeps the relay it found first when it runs again, as it does for every test file", () => {
  expect(first).toBeTypeOf("function");
  expect(globalThis.__mailroomRelay).toBe(first);
});
