/**
 * The stub's HTTP helpers moved to the project's one HTTP client
 * (src/net/http-client.ts); this re-export keeps the importers that have not
 * switched yet compiling. Import from src/net/http-client.ts instead.
 */
export { postJson, problemError, requestJson, tlsAgent, type JsonRequest } from '../net/http-client.ts';
