// TRANSPORT, in order, for one batch: a session comes from the first transport that can be used at all,
// and once one could not (the relay cannot be reached, refuses TLS or AUTH, or is closing) before any
// session of the batch was up, the batch fails over to the next and does not try the first again. Once
// one is up, the transport works: an extra session turned away is no reason to fail over. A transport's
// refusal of a recipient is never a reason to fail over: that is an answer about the mail, recorded as it is.
import type { OpenOptions, SmtpFailure, SmtpResult, Transport, TransportSession } from "../transport/transport";
import { cloudflareTransport } from "../transport/cloudflare/transport";
import { pacedTransport } from "../transport/smtp/paced";
import { smtpTransport } from "../transport/smtp/transport";
import type { DeliveryContext } from "./chunk";

export function transportsFor({ config, email, pacer }: Pick<DeliveryContext, "config" | "email" | "pacer">): Transport[] {
  return config.transports.map((name, i) => {
    if (name === "smtp") {
      const smtp = smtpTransport(config.smtp!);
      // One pacer per relay, however many invocations deliver to it.
      return config.pacing && pacer ? pacedTransport(smtp, pacer.getByName(`${config.smtp!.host}:${config.smtp!.port}`), config.pacing) : smtp;
    }
    // parseConfig refuses TRANSPORT=cloudflare without the binding.
    return cloudflareTransport(email!, { fallback: i > 0 });
  });
}

/** What openSession needs of the batch: its transports, where it has failed over to, and whether a session of it is up. */
export interface SessionSource {
  transports: Transport[];
  failedOver: number;
  /** Once a session of the batch is up, the transport works: a later refusal (an extra session turned away) is no reason to fail over. */
  sessionUp: boolean;
  context: Pick<DeliveryContext, "log">;
}

/**
 * A session from the first usable transport (from where the batch failed over to); if none can be
 * used, the first one's failure (only the relay can fail to open: Email Service, which comes last, has
 * no session to open).
 */
export async function openSession(source: SessionSource, options: OpenOptions): Promise<SmtpResult<TransportSession>> {
  let first: { name: string; failure: SmtpFailure } | undefined;
  const last = source.sessionUp ? source.failedOver : source.transports.length - 1;
  for (let i = source.failedOver; i <= last; i++) {
    const transport = source.transports[i]!;
    const opened = await transport.open(options);
    // Held back by Mailroom's own pacing: the relay is fine, it just has no room for one more now.
    if (!opened.ok && opened.failure.stage === "pacing") return opened;
    if (opened.ok) {
      if (first) source.context.log.warn("transport cannot be used; failing over", { transport: first.name, next_transport: transport.name, reason: first.failure.message });
      source.failedOver = Math.max(source.failedOver, i);
      return opened;
    }
    first ??= { name: transport.name, failure: opened.failure };
  }
  return { ok: false, failure: first!.failure };
}
