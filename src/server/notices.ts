/**
 * Delivering notices to MSPs (PROTOCOL.md §9): a POST of the notice to the
 * MSP's registry `notify` URL, or, without one, a JSON line appended to
 * `<outbox>/notices.jsonl` and flushed before the response is sent.
 */
import type { Logger } from 'pino';
import type { Notice } from '../dp/registrar.ts';
import type { Registries } from './dp-http.ts';
import { appendJsonLine } from './outbox.ts';

/** How long a POST to an MSP's `notify` URL may take. */
const NOTIFY_TIMEOUT_MS = 5000;

/** Delivers each notice; outbox lines are on disk when this resolves, POSTs run on (failures are logged). */
export async function deliverNotices(
  notices: readonly Notice[],
  registries: (() => Promise<Registries>) | undefined,
  outbox: string | undefined,
  logger: Logger,
): Promise<void> {
  if (notices.length === 0) return;
  const msps = registries === undefined ? undefined : (await registries()).msps;
  for (const notice of notices) {
    const url = msps?.get(notice.msp)?.notify;
    if (url === undefined) {
      // No notify URL and no outbox configured: the MSP is not told (logged without the CSI).
      if (outbox === undefined)
        logger.warn({ msp: notice.msp, notice: notice.notice }, 'a notice has nowhere to go: the MSP has no notify URL and no outbox is configured');
      else await appendJsonLine(outbox, 'notices.jsonl', notice);
      continue;
    }
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(notice),
      signal: AbortSignal.timeout(NOTIFY_TIMEOUT_MS),
    })
      .then(async (res) => {
        await res.body?.cancel();
        if (!res.ok) logger.warn({ msp: notice.msp, status: res.status }, 'MSP notify endpoint refused a notice');
      })
      .catch((err: unknown) => logger.warn({ msp: notice.msp, fault: err instanceof Error ? err.message : String(err) }, 'MSP notify endpoint unreachable'));
  }
}
