// TRANSPORT, in order, for one batch: its sessions come from the first transport that can be used at all,
// and once none of them could be opened there (the relay cannot be reached, refuses TLS or AUTH, or is
// closing), the batch fails over to the next and does not try the first again. Once one is up, the
// transport works: another session turned away is no reason to fail over. A transport's
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

/** What opening a batch's sessions needs of it: its transports, and where it has failed over to. */
export interface SessionSource {
  transports: Transport[];
  /** The transport the batch is on: once one could not be used at all, the batch does not try it again. */
  failedOver: number;
  context: Pick<DeliveryContext, "log">;
}

export interface LaneOpening {
  /** How many sessions to open at once (SMTP_SESSIONS, or fewer for a small batch). */
  count: number;
  deadline: number;
  /** How long the first of them may wait for a place under SMTP_MAX_CONNECTIONS (the others take one only if it is free). */
  waitUntil: number;
}

/**
 * Opens the batch's sessions all at once, each handed to `start` as soon as it is up, so that no session
 * waits for another's handshake. Only once every one of them has settled is it decided whether the
 * transport can be used: one up is enough (a relay that takes fewer connections than asked for), and
 * only when none is, for a reason other than pacing, does the batch fail over to the next transport and
 * open its sessions there. Returns nothing when a session is up; else pacing's "no place in time", or the
 * first transport's failure when none could be used.
 */
export async function openSessions(source: SessionSource, { count, deadline, waitUntil }: LaneOpening, start: (session: TransportSession) => void): Promise<SmtpFailure | undefined> {
  const { log } = source.context;
  let first: { name: string; failure: SmtpFailure } | undefined;
  for (let i = source.failedOver; i < source.transports.length; i++) {
    const transport = source.transports[i]!;
    const opens = Array.from({ length: count }, async (_, lane) => {
      const opened = await transport.open({ deadline, waitUntil: lane === 0 ? waitUntil : undefined });
      if (opened.ok) start(opened.value);
      return opened;
    });
    const failures = (await Promise.all(opens)).flatMap((opened) => (opened.ok ? [] : [opened.failure]));
    if (failures.length < count) {
      if (first) log.warn("transport cannot be used; failing over", { transport: first.name, next_transport: transport.name, reason: first.failure.message });
      // A relay that takes fewer connections than asked for: the sessions that are up carry the batch.
      if (failures.length > 0) log.info("not every session could be opened; the others carry on", { sessions: count - failures.length, turned_away: failures.length, reason: failures[0]!.message });
      source.failedOver = i;
      return undefined;
    }
    const refused = failures.find((failure) => failure.stage !== "pacing");
    // Held back by Mailroom's own pacing: the relay is fine, it just has no room for more now.
    if (!refused) return failures[0];
    first ??= { name: transport.name, failure: refused };
  }
  return first!.failure;
}

/** A session again on the transport the batch is on, for a lane whose session ended: never a reason to fail over. */
export function reopenSession(source: SessionSource, options: OpenOptions): Promise<SmtpResult<TransportSession>> {
  return source.transports[source.failedOver]!.open(options);
}
