// Types for webhook-receiver.mjs, so the TypeScript tests can start one and read what it received.
export interface ScriptedAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  delayMs?: number;
}

export interface WebhookDelivery {
  headers: Record<string, string | string[] | undefined>;
  body: string;
  at: string;
  /** The status it was answered with. */
  answered: number;
}

export interface WebhookReceiver {
  port: number;
  received(name: string): WebhookDelivery[];
  close(): Promise<void>;
}

export function startWebhookReceiver(options?: { host?: string; port?: number }): Promise<WebhookReceiver>;
