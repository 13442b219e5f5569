// The service's log lines (console.log) are kept in memory instead of going through vitest's console
// relay, and printed only for a test that fails. A queue delivery can outlive the test file that queued
// it; its late log line, relayed from another file's context, is I/O the pool runner cannot serve
// ("Cannot perform I/O on behalf of a different Durable Object"), and the run hangs.
import { beforeEach } from "vitest";

const marker = Symbol.for("mailroom.quietLogs");
type Quiet = { (...args: unknown[]): void; [marker]: true };
let lines: string[] = [];

// This file runs before every test file (one isolate for all): install the buffer once, and print a
// failing test's lines through the console.log this file found (vitest's relay for the current file).
// The pool's console is a Proxy that hands out every method bound (a new function, without the marker):
// the function installed is read from the console's own property instead.
const installed = Object.getOwnPropertyDescriptor(console, "log")?.value as Partial<Quiet> | undefined;
const relay = installed?.[marker] ? globalThis.__mailroomRelay! : console.log;
globalThis.__mailroomRelay = relay;
const quiet = Object.assign((...args: unknown[]) => {
  lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
  if (lines.length > 2000) lines.shift();
}, { [marker]: true as const });
console.log = quiet;

beforeEach(({ onTestFailed }) => {
  lines = [];
  onTestFailed(() => {
    for (const line of lines) relay(line);
  });
});

declare global {
  // eslint-disable-next-line no-var
  var __mailroomRelay: typeof console.log | undefined;
}
