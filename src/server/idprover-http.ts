/**
 * The HTTP front-end of an identity prover (PROTOCOL.md §8): identifies each
 * client (API key, client certificate, else its network prefix) for the
 * prover's per-client bucket, and discloses the challenge limits (§16).
 */
import type { FastifyInstance } from 'fastify';
import { challengeAnswerSchema, challengeRequestSchema, idParamSchema } from '../protocol/requests.ts';
import { MAX_ATTEMPTS, type IdentityProver } from '../dp/idprover.ts';
import { MAX_REQUEST_BODY } from '../protocol/messages.ts';
import { DEFAULT_LIMITS, type Limits } from '../zone/limits-file.ts';
import { identifyClient } from './client-identity.ts';
import { parseBody, refuseOtherMethods } from './http-common.ts';

/** Adds an identity prover's routes; `limits` name the known clients (API keys, certificates) and the prefix aggregation. */
export function addIdproverRoutes(app: FastifyInstance, prover: IdentityProver, limits: () => Limits = () => DEFAULT_LIMITS): void {
  app.post('/v1/challenges', async (request, reply) => {
    // PROTOCOL.md §16: one bucket per client; anonymous clients share theirs per network prefix. An unknown API key is 401.
    const client = identifyClient(request.raw, limits());
    const body = parseBody(challengeRequestSchema, request.body);
    const created = await prover.challenge(body.csi, body.jwk, client.limitKey ?? client.identity);
    return reply.code(201).type('application/json').send(JSON.stringify(created));
  });
  refuseOtherMethods(app, '/v1/challenges', ['POST']);
  app.post('/v1/challenges/:id/answer', async (request, reply) => {
    const { id } = parseBody(idParamSchema, request.params);
    const body = parseBody(challengeAnswerSchema, request.body);
    const answered = await prover.answer(id, body.code);
    return reply.type('application/json').send(JSON.stringify(answered));
  });
  refuseOtherMethods(app, '/v1/challenges/:id/answer', ['POST']);
  app.get('/.well-known/mimi-discovery', async (_request, reply) => {
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
  refuseOtherMethods(app, '/.well-known/mimi-discovery', ['GET']);
}
