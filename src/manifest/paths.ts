import { CordonError } from '../errors.js';
import { memoise } from './memo.js';

export type PathErrorCode =
  | 'PATH_EMPTY'
  | 'PATH_RELATIVE'
  | 'PATH_NUL'
  | 'PATH_CONTROL_CHAR'
  | 'PATH_DOTDOT'
  | 'PATH_EMPTY_SEGMENT'
  | 'PATH_TILDE_USER'
  | 'PATH_GLOB_SYNTAX'
  | 'PATH_TOO_LONG';

/** A path pattern from a manifest, checked and normalised. */
export interface PathPattern {
  /** Normalised text, `~` kept: `~/Work/Reports/**`. This is what manifests store after parsing. */
  readonly text: string;
  /** True when the pattern is relative to the user's home directory (`~` or `~/...`). */
  readonly home: boolean;
  /** Segments after the root (or after `~`). */
  readonly segments: readonly string[];
  /** Number of leading segments that contain no glob characters. */
  readonly literalDepth: number;
  /** True when any segment holds `*`, `?` or is `**`. */
  readonly hasGlob: boolean;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// Bidirectional overrides make a path display differently from what it is.
const BIDI = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const UNSUPPORTED_GLOB = /[[\]{}]/;
const MAX_PATH = 4096;

function pathError(code: PathErrorCode, message: string, hint: string): CordonError {
  return new CordonError(code, message, { hint });
}

function isGlobSegment(seg: string): boolean {
  return seg.includes('*') || seg.includes('?');
}

/**
 * Parse one manifest path: absolute (`/srv/data`) or home-relative (`~/Work`), with the globs
 * `*` (any characters within one segment), `?` (one character) and `**` (any number of whole
 * segments). `.` segments and a trailing `/` are normalised away, `..` is resolved against
 * literal segments; what cannot be normalised safely is an error.
 *
 * @example
 * parsePathPattern('~/Work/./Reports/').text; // '~/Work/Reports'
 */
function parsePathPatternUncached(raw: string): PathPattern {
  if (raw.length === 0)
    throw pathError('PATH_EMPTY', 'path is empty', 'write an absolute path or ~/...');
  if (raw.includes('\0')) {
    throw pathError(
      'PATH_NUL',
      'path contains a NUL byte',
      'remove the NUL character; no real path contains one',
    );
  }
  if (CONTROL.test(raw) || BIDI.test(raw)) {
    throw pathError(
      'PATH_CONTROL_CHAR',
      'path contains a control or bidirectional-override character',
      'remove invisible characters from the path',
    );
  }
  if (raw.length > MAX_PATH)
    throw pathError(
      'PATH_TOO_LONG',
      `path is longer than ${MAX_PATH} characters`,
      'shorten the path',
    );
  const s = raw.normalize('NFC');
  let home = false;
  let rest: string;
  if (s === '~' || s.startsWith('~/')) {
    home = true;
    rest = s.slice(1);
  } else if (s.startsWith('~')) {
    throw pathError(
      'PATH_TILDE_USER',
      `"${raw}" names another user's home`,
      'use ~/... (the running user) or an absolute path',
    );
  } else if (s.startsWith('/')) {
    rest = s;
  } else {
    throw pathError(
      'PATH_RELATIVE',
      `"${raw}" is relative`,
      'write an absolute path (/...) or a home path (~/...)',
    );
  }
  const parts = rest.split('/').slice(1);
  // A single trailing slash is a directory marker and normalises away; anything else empty is a trick.
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  const segments: string[] = [];
  let sawGlob = false;
  for (const part of parts) {
    if (part === '') {
      throw pathError(
        'PATH_EMPTY_SEGMENT',
        `"${raw}" contains an empty segment (//)`,
        'write single slashes between segments',
      );
    }
    if (part === '.') continue;
    if (part === '..') {
      const prev = segments[segments.length - 1];
      if (prev === undefined) {
        throw pathError(
          'PATH_DOTDOT',
          `"${raw}" climbs above ${home ? 'the home directory' : 'the root'}`,
          'remove the .. segments',
        );
      }
      if (sawGlob) {
        throw pathError(
          'PATH_DOTDOT',
          `"${raw}" has .. after a glob`,
          'write the path without .. segments',
        );
      }
      segments.pop();
      continue;
    }
    if (UNSUPPORTED_GLOB.test(part)) {
      throw pathError(
        'PATH_GLOB_SYNTAX',
        `"${raw}": [ ] { } are not supported`,
        'use *, ? and ** only, or list the paths separately',
      );
    }
    if (part.includes('**') && part !== '**') {
      throw pathError(
        'PATH_GLOB_SYNTAX',
        `"${raw}": ** must be a whole segment`,
        'write /**/ or use * within a segment',
      );
    }
    if (isGlobSegment(part)) sawGlob = true;
    segments.push(part);
  }
  let literalDepth = 0;
  while (literalDepth < segments.length && !isGlobSegment(segments[literalDepth] ?? ''))
    literalDepth++;
  const body = segments.join('/');
  const text = home ? (body === '' ? '~' : `~/${body}`) : `/${body}`;
  return { text, home, segments, literalDepth, hasGlob: literalDepth < segments.length };
}

/** The absolute form of a pattern for one user. `home` must be an absolute, normalised path. */
export function expandHome(pattern: PathPattern, home: string): string {
  if (!pattern.home) return pattern.text;
  const base = home === '/' ? '' : home.replace(/\/+$/, '');
  return pattern.text === '~' ? base || '/' : base + pattern.text.slice(1);
}

function escapeRe(s: string): string {
  return s.replace(/[.+^${}()|[\]\\]/g, '\\$&');
}

/**
 * Compile an absolute pattern into a matcher for absolute, normalised paths. A pattern without
 * globs matches the path itself and everything beneath it (as a bind mount would expose);
 * `**` matches zero or more whole segments; `*` and `?` never cross a `/` but do match
 * names starting with a dot.
 */
export function compilePathMatcher(absolute: string): (path: string) => boolean {
  const p = parsePathPattern(absolute);
  if (p.home) throw new CordonError('PATH_RELATIVE', 'expand ~ before compiling a matcher');
  let re = '^';
  for (const seg of p.segments) {
    if (seg === '**') {
      re += '(?:/[^/]+)*';
    } else {
      re += '/' + escapeRe(seg).replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
    }
  }
  if (!p.hasGlob) re += '(?:/.*)?';
  re += '$';
  const rx = new RegExp(re, 's');
  // The root has zero segments, so it is tested as the empty string.
  return (path: string) => rx.test(path === '/' ? '' : path);
}

/**
 * Whether two patterns may select a common path (conservative: true when one literal base
 * lies within the other). Used to decide whether a requiresApproval entry or a mandatory deny
 * touches a grant. Expand `~` first when comparing home and absolute patterns.
 */
export function pathPatternsOverlap(a: PathPattern, b: PathPattern): boolean {
  if (a.home !== b.home) return false;
  const n = Math.min(a.literalDepth, b.literalDepth);
  for (let i = 0; i < n; i++) if (a.segments[i] !== b.segments[i]) return false;
  // Both fully literal: one must contain the other, which the prefix check above established.
  return true;
}

/** Memoised: manifests repeat the same entries across parse, lint and compile. */
export const parsePathPattern = memoise(parsePathPatternUncached);
