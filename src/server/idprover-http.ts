/**
 * The HTTP front-end of an identity prover (PROTOCOL.md §8): identifies each
 * client (API key, client certificate, else its network prefix) for the
 * prover's per-client bucket, and discloses the challenge limits (§16).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import { MimiError } from '../errors.ts';
import { MAX_ATTEMPTS, type IdentityProver } from '../dp/idprover.ts';
import { MAX_REQUEST_BODY } from '../protocol/messages.ts';
import { DEFAULT_LIMITS, type Limits } from '../zone/limits-file.ts';
import { identifyClient } from './client-identity.ts';
import { createHttpApp, parseBody, refuseOtherMethods, type TlsServerOptions } from './http-common.ts';

/** Holds the prover a front-end serves; set once keys are loaded. */
export interface ProverHolder {
  current: IdentityProver | undefined;
}

const challengeSchema = z.strictObject({ csi: z.string(), jwk: z.record(z.string(), z.unknown()) });
const answerSchema = z.strictObject({ code: z.string().max(32) });

function serving(holder: ProverHolder): IdentityProver {
  if (holder.current === undefined) throw new MimiError('upstream_unavailable', 'the server is starting', { status: 503 });
  return holder.current;
}

/** Creates the fastify app of an identity prover; `limits` name the known clients (API keys, certificates) and the prefix aggregation. */
export function createIdproverApp(holder: ProverHolder, logger: Logger, tls?: TlsServerOptions, limits: Limits = DEFAULT_LIMITS): FastifyInstance {
  const app = createHttpApp(logger, { tls, connections: limits.connections });
  app.post('/v1/challenges', async (request, reply) => {
    // PROTOCOL.md §16: one bucket per client; anonymous clients share theirs per network prefix. An unknown API key is 401.
    const client = identifyClient(request.raw, limits);
    const body = parseBody(challengeSchema, request.body);
    const created = await serving(holder).challenge(body.csi, body.jwk, client.limitKey ?? client.identity);
    return reply.code(201).type('application/json').send(JSON.stringify(created));
  });
  refuseOtherMethods(app, '/v1/challenges', ['POST']);
  app.post<{ Params: { id: string } }>('/v1/challenges/:id/answer', async (request, reply) => {
    const body = parseBody(answerSchema, request.body);
    const answered = await serving(holder).answer(request.params.id.slice(0, 64), body.code);
    return reply.type('application/json').send(JSON.stringify(answered));
  });
  refuseOtherMethods(app, '/v1/challenges/:id/answer', ['POST']);
  app.get('/.well-known/mimi-discovery', async (_request, reply) => {
    const prover = serving(holder);
    return reply.type('application/json').send(
      JSON.stringify({
        role: 'idprover',
        id: prover.id,
        serial: null,
        zones: prover.attests,
        formats: ['jwt'],
        federation: { default: 'none', modes: [] },
        limits: { maxRequestBody: MAX_REQUEST_BODY, maxAttempts: MAX_ATTEMPTS, ...prover.limits },
      }),
    );
  });
  return app;
}
