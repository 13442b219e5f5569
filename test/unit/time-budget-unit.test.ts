import { describe, expect, it } from "vitest";
import { createTimeBudget, INVOCATION_LIMIT_MS } from "../../src/core/time-budget";

describe("time budget of a consumer invocation", () => {
  it("by default starts transactions for 4½ minutes and leaves the last one RFC 5321's 10 minutes", () => {
    const budget = createTimeBudget(0, 900);
    expect(budget.startsNoneAfter).toBe(5 * 60_000 - 30_000);
    // Claimed at the last moment: the attempt may wait until 30 s before the invocation ends, 10 minutes on.
    expect(budget.attemptDeadline(budget.startsNoneAfter)).toBe(INVOCATION_LIMIT_MS - 30_000);
    expect(budget.attemptDeadline(budget.startsNoneAfter) - budget.startsNoneAfter).toBe(10 * 60_000);
  });

  it("ends an attempt before its claim expires, keeping a margin to record the outcome", () => {
    const budget = createTimeBudget(1_000, 10);
    expect(budget.startsNoneAfter).toBe(1_000 + 10_000 / 3 - 2_000);
    expect(budget.attemptDeadline(2_000)).toBe(2_000 + 10_000 - 2_000);
    expect(budget.recordBy(2_000)).toBe(2_000 + 10_000 - 1_000);
  });

  it("never lets an attempt outlive the invocation, however long the lease", () => {
    const budget = createTimeBudget(0, 43_200);
    expect(budget.startsNoneAfter).toBe(INVOCATION_LIMIT_MS / 3 - 30_000);
    expect(budget.attemptDeadline(60_000)).toBe(INVOCATION_LIMIT_MS - 30_000);
    expect(budget.recordBy(60_000)).toBe(INVOCATION_LIMIT_MS - 1_000);
  });
});
