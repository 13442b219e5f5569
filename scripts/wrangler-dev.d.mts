// Types for wrangler-dev.mjs, so the TypeScript e2e test can start a real `wrangler dev`.
import type { ChildProcess } from "node:child_process";

export type OutputListener = (chunk: string, stream: "stdout" | "stderr") => void;

export interface WranglerDevOptions {
  /** Defaults to a port the OS picks; so does inspectorPort. */
  port?: number;
  inspectorPort?: number;
  /** Passed as `--var NAME:VALUE`: wins over wrangler.toml, .dev.vars and the env file. */
  vars?: Record<string, string>;
  /** Local state directory (D1) instead of .wrangler/state. */
  persistTo?: string;
  /** Read instead of .dev.vars / .env, so a developer's local settings cannot leak in. */
  envFile?: string;
  /** Extra environment for the wrangler process. */
  env?: Record<string, string>;
  onOutput?: OutputListener;
  readyTimeoutMs?: number;
  /** Run the scheduled handler (the sweep) once ready and then at this interval; npm start: 60 000. */
  sweepEveryMs?: number;
}

export interface WranglerDev {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  inspectorPort: number;
  /** Also the process group id. */
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last 16 000 characters wrangler printed. */
  output(): string;
  /** Kills the whole process group (SIGTERM, then SIGKILL); resolves when nothing of it is left. */
  stop(): Promise<void>;
  /** SIGKILL to the whole group at once, as a crash; resolves when nothing of it is left. */
  kill(): Promise<void>;
}

export const OFFLINE_ENV: Readonly<Record<string, string>>;
export function findFreePort(preferred?: number): Promise<number>;
export function stopProcessGroup(child: ChildProcess, options?: { graceMs?: number; signal?: NodeJS.Signals }): Promise<void>;
/** Resolves to the number of migrations applied (0: up to date). */
export function applyMigrations(options?: { persistTo?: string; env?: Record<string, string>; onOutput?: OutputListener }): Promise<number>;
export function startWranglerDev(options?: WranglerDevOptions): Promise<WranglerDev>;
