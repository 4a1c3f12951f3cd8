/**
 * A validator for OCSF events built straight from the OCSF schema source files (the format of
 * github.com/ocsf/ocsf-schema): it resolves `extends` chains for classes and objects, `$include`d
 * profiles, and dictionary attributes and types, then checks an event for its class, type_uid,
 * required attributes, unknown attributes, enums, sibling captions, primitive types with their
 * regex/length/range rules, and the `at_least_one` / `just_one` constraints.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

interface AttrDef {
  type?: string;
  is_array?: boolean;
  requirement?: string;
  enum?: Record<string, { caption?: string }>;
  sibling?: string;
  profile?: string | null;
  /** Set when the attribute came from an included profile file. */
  fromProfile?: string;
}

interface Resolved {
  name: string;
  attributes: Record<string, AttrDef>;
  constraints: { at_least_one?: string[]; just_one?: string[] };
}

interface TypeDef {
  type?: string;
  regex?: string;
  max_len?: number;
  range?: [number, number];
  values?: unknown[];
}

interface SchemaFile {
  name: string;
  extends?: string;
  category?: string;
  uid?: number;
  attributes: Record<string, unknown>;
  constraints?: Resolved['constraints'];
}

function readJson(file: string): SchemaFile {
  return JSON.parse(readFileSync(file, 'utf8')) as SchemaFile;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.json') ? [p] : [];
  });
}

export class OcsfSchema {
  readonly #root: string;
  readonly #dict: Record<string, AttrDef>;
  readonly #types: Record<string, TypeDef>;
  readonly #objects = new Map<string, SchemaFile>();
  readonly #events = new Map<string, SchemaFile>();
  readonly #resolvedObjects = new Map<string, Resolved>();
  readonly #classes = new Map<number, Resolved & { categoryUid: number }>();

  constructor(root: string) {
    this.#root = root;
    const dict = JSON.parse(readFileSync(join(root, 'dictionary.json'), 'utf8')) as {
      attributes: Record<string, AttrDef>;
      types: { attributes: Record<string, TypeDef> };
    };
    this.#dict = dict.attributes;
    this.#types = dict.types.attributes;
    for (const f of walk(join(root, 'objects'))) {
      const o = readJson(f);
      this.#objects.set(o.name, o);
    }
    for (const f of walk(join(root, 'events'))) {
      const e = readJson(f);
      this.#events.set(relative(join(root, 'events'), f).includes('/') ? e.name : e.name, e);
    }
    const categories = (
      JSON.parse(readFileSync(join(root, 'categories.json'), 'utf8')) as {
        attributes: Record<string, { uid: number }>;
      }
    ).attributes;
    for (const e of this.#events.values()) {
      const chain = this.#chain(this.#events, e);
      const category = [...chain].reverse().find((c) => c.category !== undefined)?.category;
      const categoryUid = category === undefined ? 0 : (categories[category]?.uid ?? 0);
      const classUid = e.uid === undefined ? 0 : categoryUid * 1000 + e.uid;
      this.#classes.set(classUid, { ...this.#merge(chain), categoryUid });
    }
  }

  #chain(map: Map<string, SchemaFile>, start: SchemaFile): SchemaFile[] {
    const chain: SchemaFile[] = [];
    for (let cur: SchemaFile | undefined = start; cur !== undefined;) {
      chain.unshift(cur);
      if (cur.extends === undefined) break;
      const next = map.get(cur.extends);
      if (next === undefined) throw new Error(`${cur.name} extends unknown ${cur.extends}`);
      cur = next;
    }
    return chain;
  }

  /** Merge a chain (base first): included files first, then each file's own definitions. */
  #merge(chain: SchemaFile[]): Resolved {
    const attributes: Record<string, AttrDef> = {};
    const constraints: Resolved['constraints'] = {};
    const add = (name: string, def: AttrDef, fromProfile?: string) => {
      const prev = attributes[name] ?? {};
      const merged: AttrDef = { ...prev, ...def };
      if (prev.enum !== undefined || def.enum !== undefined) {
        merged.enum = { ...(prev.enum ?? {}), ...(def.enum ?? {}) };
      }
      if (fromProfile !== undefined && prev.fromProfile === undefined && !(name in attributes)) {
        merged.fromProfile = fromProfile;
      }
      attributes[name] = merged;
    };
    for (const file of chain) {
      const inc = file.attributes['$include'];
      for (const path of inc === undefined
        ? []
        : Array.isArray(inc)
          ? (inc as string[])
          : [inc as string]) {
        const included = readJson(join(this.#root, path));
        const profile = path.startsWith('profiles/') ? included.name : undefined;
        for (const [k, v] of Object.entries(included.attributes)) {
          if (k !== '$include') add(k, v as AttrDef, profile);
        }
      }
      for (const [k, v] of Object.entries(file.attributes)) {
        if (k === '$include') continue;
        add(k, v as AttrDef);
        // A class attribute with "profile": null belongs to the class whatever profiles are on.
        if ((v as AttrDef).profile === null) delete attributes[k]!.fromProfile;
      }
      if (file.constraints !== undefined) Object.assign(constraints, file.constraints);
    }
    for (const [k, def] of Object.entries(attributes)) {
      const d = this.#dict[k];
      if (d === undefined) throw new Error(`attribute ${k} is not in the dictionary`);
      const merged: AttrDef = { ...d, ...def };
      if (d.enum !== undefined || def.enum !== undefined)
        merged.enum = { ...(d.enum ?? {}), ...(def.enum ?? {}) };
      attributes[k] = merged;
    }
    return { name: chain[chain.length - 1]!.name, attributes, constraints };
  }

  #object(name: string): Resolved | undefined {
    const cached = this.#resolvedObjects.get(name);
    if (cached !== undefined) return cached;
    const file = this.#objects.get(name);
    if (file === undefined) return undefined;
    const r = this.#merge(this.#chain(this.#objects, file));
    this.#resolvedObjects.set(name, r);
    return r;
  }

  classUids(): number[] {
    return [...this.#classes.keys()];
  }

  /** Every problem with `event`, as `path: message`; empty when the event is valid. */
  validate(event: unknown): string[] {
    const errors: string[] = [];
    if (typeof event !== 'object' || event === null || Array.isArray(event))
      return ['event is not an object'];
    const e = event as Record<string, unknown>;
    const classUid = e['class_uid'];
    const cls = typeof classUid === 'number' ? this.#classes.get(classUid) : undefined;
    if (cls === undefined) return [`class_uid ${String(classUid)} is not an OCSF class`];
    if (e['category_uid'] !== cls.categoryUid) {
      errors.push(
        `category_uid: ${String(e['category_uid'])} is not ${cls.categoryUid} for class ${cls.name}`,
      );
    }
    if (
      typeof e['activity_id'] === 'number' &&
      e['type_uid'] !== (classUid as number) * 100 + e['activity_id']
    ) {
      errors.push(`type_uid: ${String(e['type_uid'])} is not class_uid * 100 + activity_id`);
    }
    const meta = e['metadata'] as { profiles?: unknown } | undefined;
    const profiles = Array.isArray(meta?.profiles) ? (meta.profiles as string[]) : [];
    this.#validateObject(e, cls, '', profiles, errors);
    return errors;
  }

  #validateObject(
    value: Record<string, unknown>,
    def: Resolved,
    path: string,
    profiles: string[],
    errors: string[],
  ): void {
    for (const [k, v] of Object.entries(value)) {
      const a = def.attributes[k];
      const p = `${path}/${k}`;
      if (a === undefined) {
        errors.push(`${p}: not an attribute of ${def.name}`);
        continue;
      }
      if (a.fromProfile !== undefined && !profiles.includes(a.fromProfile)) {
        errors.push(
          `${p}: belongs to profile ${a.fromProfile}, which metadata.profiles does not list`,
        );
      }
      this.#validateValue(v, a, p, profiles, errors);
      if (a.sibling !== undefined && a.enum !== undefined && k in value && a.sibling in value) {
        const caption = a.enum[String(v)]?.caption;
        if (caption !== undefined && v !== 99 && value[a.sibling] !== caption) {
          errors.push(
            `${path}/${a.sibling}: ${JSON.stringify(value[a.sibling])} is not the caption of ${k}=${String(v)} (${caption})`,
          );
        }
      }
    }
    for (const [k, a] of Object.entries(def.attributes)) {
      const gated = a.fromProfile !== undefined && !profiles.includes(a.fromProfile);
      if (a.requirement === 'required' && !gated && !(k in value)) {
        errors.push(`${path}/${k}: required by ${def.name} but missing`);
      }
    }
    const present = (names: string[]) => names.filter((n) => n in value).length;
    if (def.constraints.at_least_one !== undefined && present(def.constraints.at_least_one) === 0) {
      errors.push(
        `${path || '/'}: ${def.name} needs at least one of ${def.constraints.at_least_one.join(', ')}`,
      );
    }
    if (def.constraints.just_one !== undefined && present(def.constraints.just_one) !== 1) {
      errors.push(
        `${path || '/'}: ${def.name} needs exactly one of ${def.constraints.just_one.join(', ')}`,
      );
    }
  }

  #validateValue(v: unknown, a: AttrDef, path: string, profiles: string[], errors: string[]): void {
    if (a.is_array === true) {
      if (!Array.isArray(v)) {
        errors.push(`${path}: must be an array`);
        return;
      }
      v.forEach((item, i) =>
        this.#validateValue(item, { ...a, is_array: false }, `${path}/${i}`, profiles, errors),
      );
      return;
    }
    // class_uid and category_uid enums are generated per class; validate() checks them directly.
    const generated = path === '/class_uid' || path === '/category_uid';
    if (a.enum !== undefined && !generated && !(String(v) in a.enum)) {
      errors.push(
        `${path}: ${JSON.stringify(v)} is not one of the enum values ${Object.keys(a.enum).join(', ')}`,
      );
    }
    const type = a.type ?? 'string_t';
    if (type === 'object') {
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        errors.push(`${path}: must be an object`);
      return;
    }
    if (type in this.#types) {
      this.#validatePrimitive(v, type, path, errors);
      return;
    }
    const obj = this.#object(type);
    if (obj === undefined) {
      errors.push(`${path}: unknown type ${type}`);
      return;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      errors.push(`${path}: must be a ${type} object`);
      return;
    }
    this.#validateObject(v as Record<string, unknown>, obj, path, profiles, errors);
  }

  #validatePrimitive(v: unknown, type: string, path: string, errors: string[]): void {
    const t = this.#types[type]!;
    const baseType = t.type ?? type;
    const ok = (() => {
      switch (baseType) {
        case 'string_t':
          return typeof v === 'string';
        case 'integer_t':
          return Number.isInteger(v) && Math.abs(v as number) <= 2 ** 31;
        case 'long_t':
          return Number.isSafeInteger(v);
        case 'float_t':
          return typeof v === 'number' && Number.isFinite(v);
        case 'boolean_t':
          return typeof v === 'boolean';
        case 'json_t':
          return true;
        default:
          return false;
      }
    })();
    if (!ok) {
      errors.push(`${path}: ${JSON.stringify(v)} is not a ${type}`);
      return;
    }
    if (t.regex !== undefined && typeof v === 'string' && !new RegExp(t.regex).test(v)) {
      errors.push(`${path}: ${JSON.stringify(v)} does not match the ${type} pattern`);
    }
    if (t.max_len !== undefined && typeof v === 'string' && v.length > t.max_len) {
      errors.push(`${path}: longer than ${t.max_len} for ${type}`);
    }
    if (t.range !== undefined && typeof v === 'number' && (v < t.range[0] || v > t.range[1])) {
      errors.push(`${path}: ${v} is outside ${t.range.join('..')} for ${type}`);
    }
  }
}

export const OCSF_DIR = join(import.meta.dirname, '..', 'data', 'ocsf-1.8.0');
