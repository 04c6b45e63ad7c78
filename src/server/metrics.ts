/**
 * The process's Prometheus metrics (PROTOCOL.md §11), with prom-client on a
 * registry of its own (never the global one, so tests can run several
 * processes' worth side by side). Label values are outcome codes, DP and
 * server ids, cache and front-end names: never a CSI, a name derived from one,
 * a client address or a key.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ResolverObserver } from '../resolver/observer.ts';

/** Upstream and commit latencies, seconds (DNS-resolver-like buckets). */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Every metric of one process. */
export class Metrics {
  readonly registry = new Registry();
  readonly resolverRequests = new Counter({
    name: 'mimi_resolver_requests_total',
    help: 'Resolutions answered, by outcome (found, not_found, or the error code).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly cacheRequests = new Counter({
    name: 'mimi_resolver_cache_requests_total',
    help: 'Resolver cache look-ups, by cache and result (hit, miss, stale).',
    labelNames: ['cache', 'result'] as const,
    registers: [this.registry],
  });
  readonly upstreamRequests = new Counter({
    name: 'mimi_resolver_upstream_requests_total',
    help: 'Lookups the resolver sent to DPs, by DP and result.',
    labelNames: ['dp', 'result'] as const,
    registers: [this.registry],
  });
  readonly upstreamDuration = new Histogram({
    name: 'mimi_resolver_upstream_duration_seconds',
    help: "Time of the resolver's lookups at DPs.",
    labelNames: ['dp'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'mimi_rate_limited_total',
    help: 'Requests refused by a rate limit, by front-end (http, dns).',
    labelNames: ['front'] as const,
    registers: [this.registry],
  });
  readonly dpLookups = new Counter({
    name: 'mimi_dp_lookups_total',
    help: 'POST /v1/lookup answered by a DP, by DP and kind (answer, referral, not_found, or the error code).',
    labelNames: ['dp', 'kind'] as const,
    registers: [this.registry],
  });
  readonly dnsQueries = new Counter({
    name: 'mimi_dns_queries_total',
    help: 'DNS queries answered, by server and RCODE.',
    labelNames: ['server', 'rcode'] as const,
    registers: [this.registry],
  });
  readonly registrations = new Counter({
    name: 'mimi_registrations_total',
    help: 'Registrations, by DP and result (created, pending, unchanged, or the error code).',
    labelNames: ['dp', 'result'] as const,
    registers: [this.registry],
  });
  readonly conflictsPending = new Gauge({
    name: 'mimi_conflicts_pending',
    help: 'Conflicts waiting for a decision, by DP.',
    labelNames: ['dp'] as const,
    registers: [this.registry],
  });
  readonly storeCommit = new Histogram({
    name: 'mimi_store_commit_duration_seconds',
    help: "Durable commits of a DP's store (one group commit each).",
    labelNames: ['dp'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly zoneSerial = new Gauge({
    name: 'mimi_zone_serial',
    help: 'The serial each server serves.',
    labelNames: ['server'] as const,
    registers: [this.registry],
  });
  readonly ohttpRequests = new Counter({
    name: 'mimi_ohttp_requests_total',
    help: 'Encapsulated requests at the Oblivious HTTP gateway, by outcome (answered, replayed, unknown_key, expired_key, undecryptable, unsupported_media).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly tokenRedemptions = new Counter({
    name: 'mimi_privacy_pass_redemptions_total',
    help: 'Privacy Pass tokens presented at the gateway, by result (accepted, missing, malformed, invalid, spent, full, no_key).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly relayRequests = new Counter({
    name: 'mimi_relay_requests_total',
    help: 'Requests at the Oblivious HTTP relay, by result (forwarded, rate_limited, unsupported_media, gateway_unreachable).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly issuerTokenRequests = new Counter({
    name: 'mimi_issuer_token_requests_total',
    help: 'Token requests at the Privacy Pass issuer, by attester (an MSP id of the config, or unknown) and result (issued, quota, invalid, unauthorized).',
    labelNames: ['attester', 'result'] as const,
    registers: [this.registry],
  });
  readonly reloadSuccessful = new Gauge({
    name: 'mimi_config_last_reload_successful',
    help: 'Whether the last reload of the configuration succeeded (1) or not (0).',
    registers: [this.registry],
  });
  readonly reloadTimestamp = new Gauge({
    name: 'mimi_config_last_reload_success_timestamp_seconds',
    help: 'When the configuration was last loaded successfully.',
    registers: [this.registry],
  });

  /** Run before every scrape: gauges read from the servers (pending conflicts, serials). */
  readonly #beforeScrape: (() => void | Promise<void>)[] = [];

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.reloadSuccessful.set(1);
    this.reloadTimestamp.set(Date.now() / 1000);
  }

  /** What the resolver reports (its requests, caches and upstream lookups). */
  resolverObserver(): ResolverObserver {
    const outcomes = new Map<string, Counter.Internal>();
    return {
      outcome: (outcome) => {
        let child = outcomes.get(outcome);
        if (child === undefined) {
          child = this.resolverRequests.labels(outcome);
          outcomes.set(outcome, child);
        }
        child.inc();
      },
      cache: (cache, result) => this.cacheRequests.labels(cache, result).inc(),
      upstream: (dp, result, seconds) => {
        this.upstreamRequests.labels(dp, result).inc();
        this.upstreamDuration.labels(dp).observe(seconds);
      },
    };
  }

  /** Adds a function that sets gauges from the servers before each scrape. */
  beforeScrape(fn: () => void | Promise<void>): void {
    this.#beforeScrape.push(fn);
  }

  /** The Prometheus text of every metric. */
  async text(): Promise<string> {
    for (const fn of this.#beforeScrape) await fn();
    return this.registry.metrics();
  }

  /** The media type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
