/**
 * Reading zone files from disk: one file per server, `*.yaml` / `*.yml` in a directory.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MimiError } from '../errors.ts';
import { crossCheckZones, MAX_ZONE_FILE_BYTES, parseZoneText, type Zone } from './normalise.ts';

/** A zone with the file it came from. */
export interface LoadedZone {
  readonly zone: Zone;
  readonly source: string;
}

/** Reads, validates and normalises one zone file; throws `invalid_zone` naming the file, field and reason. */
export async function loadZoneFile(path: string): Promise<LoadedZone> {
  let text: string;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new MimiError('invalid_zone', `${path}: not a file`);
    if (info.size > MAX_ZONE_FILE_BYTES) throw new MimiError('invalid_zone', `${path}: larger than ${MAX_ZONE_FILE_BYTES} bytes`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof MimiError) throw err;
    throw new MimiError('invalid_zone', `${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  return { zone: parseZoneText(text, path), source: path };
}

/** Reads every zone file of a directory and cross-checks them as one hierarchy. */
export async function loadZoneDir(dir: string): Promise<LoadedZone[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (err) {
    throw new MimiError('invalid_zone', `${dir}: cannot read the zone directory (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  if (names.length === 0) throw new MimiError('invalid_zone', `${dir}: no zone files (*.yaml) found`);
  const zones = await loadZoneFiles(names.map((n) => join(dir, n)));
  return zones;
}

/** Reads several zone files and cross-checks them as one hierarchy. */
export async function loadZoneFiles(paths: readonly string[]): Promise<LoadedZone[]> {
  const zones: LoadedZone[] = [];
  for (const path of paths) zones.push(await loadZoneFile(path));
  crossCheckZones(zones);
  return zones;
}
