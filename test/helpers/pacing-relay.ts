// A real SMTP server (smtp-server) that counts what pacing must keep within bounds: connections open at
// once (and the most at once), and when each MAIL FROM arrived. On demand it answers the next MAIL FROMs
// the way Amazon SES does when sent to too fast ("454 Throttling failure"). Each message waits 30 ms for
// its 250, so sessions overlap as they do with a real relay.
import { SMTPServer } from "smtp-server";

export interface PacingRelayStats {
  open: number;
  peak: number;
  connections: number;
  /** When each connection was accepted, epoch ms. */
  connectedAt: number[];
  /** When each MAIL FROM that was accepted arrived, epoch ms. */
  mailFrom: number[];
  /** When each MAIL FROM answered 454 arrived. */
  throttledAt: number[];
}

export interface PacingRelay {
  port: number;
  stats: PacingRelayStats;
  /** Forgets what it counted (connections open stay counted as open). */
  reset(): void;
  /** The next `count` MAIL FROMs get 454 Throttling failure. */
  throttleNext(count: number): void;
  close(): Promise<void>;
}

export async function startPacingRelay(): Promise<PacingRelay> {
  const stats: PacingRelayStats = { open: 0, peak: 0, connections: 0, connectedAt: [], mailFrom: [], throttledAt: [] };
  let throttling = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    disableReverseLookup: true,
    onConnect(_session, callback) {
      stats.open += 1;
      stats.connections += 1;
      stats.connectedAt.push(Date.now());
      stats.peak = Math.max(stats.peak, stats.open);
      callback();
    },
    onClose() {
      stats.open -= 1;
    },
    onMailFrom(_address, _session, callback) {
      if (throttling > 0) {
        throttling -= 1;
        stats.throttledAt.push(Date.now());
        return callback(Object.assign(new Error("Throttling failure: Maximum sending rate exceeded."), { responseCode: 454 }));
      }
      stats.mailFrom.push(Date.now());
      callback();
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on("end", () => setTimeout(() => callback(), 30));
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.server.address();
  if (!address || typeof address === "string") throw new Error("pacing relay has no port");
  return {
    port: address.port,
    stats,
    reset() {
      Object.assign(stats, { peak: stats.open, connections: 0, connectedAt: [], mailFrom: [], throttledAt: [] });
      throttling = 0;
    },
    throttleNext(count) {
      throttling = count;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
