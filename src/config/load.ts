/**
 * Reading the configuration (PROTOCOL.md §11): the file (at most 1 MiB, YAML
 * without duplicate keys), the flags on top, then what it names — the limits
 * (a file or inline) and the zone files — validated before anything starts.
 * `mimi config check` runs exactly this and stops.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { MimiError } from '../errors.ts';
import { limitsFileSchema, MAX_LIMITS_FILE_BYTES, parseLimits, type Limits } from '../zone/limits-file.ts';
import { loadZoneDir, type LoadedZone } from '../zone/load.ts';
import { parseYaml } from '../zone/normalise.ts';
import { MAX_CONFIG_FILE_BYTES, normaliseConfig, overlay, parseRawConfig, resolvePaths, type Config } from './normalise.ts';
import type { RawConfig } from './schema.ts';

/** Reads a text file of at most `max` bytes; `invalid_config` naming it otherwise. */
export async function readBoundedText(path: string, max: number, what: string): Promise<string> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new MimiError('invalid_config', `${path}: ${what} is not a file`);
    if (info.size > max) throw new MimiError('invalid_config', `${path}: ${what} is larger than ${max} bytes`);
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof MimiError) throw err;
    throw new MimiError('invalid_config', `${path}: ${what} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

/** Reads and validates a configuration file; its relative paths become absolute against its directory. */
export async function readConfigFile(path: string): Promise<RawConfig> {
  const text = await readBoundedText(path, MAX_CONFIG_FILE_BYTES, 'the configuration');
  return resolvePaths(parseRawConfig(parseYaml(text, path, 'invalid_config'), path), dirname(resolve(path)));
}

/**
 * The configuration of a process: the file's (when given) with the flags'
 * keys on top; flag paths are relative to `cwd`.
 */
export async function loadConfig(file: string | undefined, flags: RawConfig, cwd: string): Promise<Config> {
  const fromFile = file === undefined ? {} : await readConfigFile(file);
  const fromFlags = resolvePaths(parseRawConfig(flags, 'the command line'), cwd);
  const source = file ?? 'the command line';
  return normaliseConfig(parseRawConfig(overlay(fromFile, fromFlags), source), source);
}

/** The limits a configuration names (a file, or inline under `limits:`), or undefined. */
export async function readConfiguredLimits(config: Config): Promise<Limits | undefined> {
  const limits = config.limits;
  if (limits === undefined) return undefined;
  if ('file' in limits) return parseLimits(await readBoundedText(limits.file, MAX_LIMITS_FILE_BYTES, 'the limits file'), limits.file);
  // Inline: the same schema, errors under `limits.`.
  const checked = limitsFileSchema.safeParse(limits.inline);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new MimiError('invalid_config', `${config.source}: limits.${issue?.path.map(String).join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  return parseLimits(JSON.stringify(limits.inline), `${config.source}: limits`);
}

/** What a configuration names, read and validated: its zones (when it runs servers) and its limits. */
export interface CheckedConfig {
  readonly config: Config;
  readonly zones: readonly LoadedZone[];
  readonly limits: Limits | undefined;
}

/** Validates a configuration and everything it names without starting anything (`mimi config check`). */
export async function checkConfig(config: Config): Promise<CheckedConfig> {
  const zones = config.zonesDir === undefined ? [] : await loadZoneDir(config.zonesDir);
  for (const item of config.serve ?? []) {
    const zone = zones.find((z) => z.zone.id === item.id)?.zone;
    if (zone === undefined) throw new MimiError('invalid_config', `${config.source}: serve: no zone file in ${config.zonesDir ?? ''} has the id "${item.id}"`);
    const unknown = item.endpoints?.find((e) => !zone.endpoints.some((own) => new URL(own).origin === e));
    if (unknown !== undefined) throw new MimiError('invalid_config', `${config.source}: serve: ${unknown} is not an endpoint of ${item.id}'s zone file`);
  }
  return { config, zones, limits: await readConfiguredLimits(config) };
}
