/**
 * Writes docs/openapi.json from the code (`npm run openapi`); a test fails
 * when the committed file differs from what this writes.
 */
import { writeFile } from 'node:fs/promises';
import { openApiDocument } from '../src/server/openapi.ts';

await writeFile(new URL('../docs/openapi.json', import.meta.url), `${JSON.stringify(openApiDocument(), null, 2)}\n`);
