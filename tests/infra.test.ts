import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

// Kubernetes, Prometheus and Grafana do not run on our machines, so the deployment files under
// infra/ are checked by parsing them: structure, cross-references between the files, and every
// metric name and label their PromQL uses against what the code exports.

const root = resolve(import.meta.dirname, '..');
const infra = join(root, 'infra');
const k8sDir = join(infra, 'k8s');
const read = (p: string) => readFileSync(join(root, p), 'utf8');
type Y = ReturnType<typeof parse>; // parsed YAML / JSON

function walk(dir: string, keep: (f: string) => boolean): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (f === 'node_modules' || f === 'dist' || f === 'generated') return [];
    if (statSync(p).isDirectory()) return walk(p, keep);
    return keep(p) ? [p] : [];
  });
}

// Metrics a dashboard panel or alert may use before any code exports them (none now: every proposed one
// landed in apps/api/src/plugins/metrics.ts). The test fails when an entry here gets exported, so it is removed.
const PROPOSED: Record<string, { type: MetricType; labels: string[]; what: string }> = {};

// ---------------------------------------------------------------------------------------------
// Metric catalogue: every prom-client metric the code defines (+ prom-client's default metrics),
// series by series (histogram -> _bucket/_sum/_count).

type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary';
interface Metric {
  name: string;
  type: MetricType;
  /** null: not read statically (default metrics): labels are not checked. */
  labels: string[] | null;
  source: string;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const sourceFiles = ['apps', 'packages'].flatMap((d) =>
  readdirSync(join(root, d)).flatMap((w) =>
    walk(join(root, d, w, 'src'), (f) => /\.(ts|mts|js|mjs)$/.test(f) && !/\.test\.|\/test\//.test(f)),
  ),
);

async function exportedMetrics(): Promise<Map<string, Metric>> {
  const out = new Map<string, Metric>();
  const ctor = /new\s+(?:\w+\.)?(Counter|Gauge|Histogram|Summary)\s*(?:<[^>]*>)?\s*\(/g;
  for (const file of sourceFiles) {
    const text = readFileSync(file, 'utf8');
    if (!/prom-client/.test(text)) continue;
    const source = relative(root, file);
    const hits = [...text.matchAll(ctor)];
    const factories: Omit<Metric, 'name'>[] = [];
    hits.forEach((m, i) => {
      const window = text.slice(m.index, hits[i + 1]?.index ?? m.index + 2_000);
      const type = m[1]!.toLowerCase() as MetricType;
      const labelList = /\blabelNames:\s*(\[[^\]]*\])?/.exec(window);
      const labels = !labelList
        ? []
        : labelList[1]
          ? [...labelList[1].matchAll(/['"`](\w+)['"`]/g)].map((l) => l[1]!)
          : null;
      const name = /\bname:\s*['"`]([^'"`]+)['"`]/.exec(window)?.[1];
      if (name && METRIC_NAME.test(name)) out.set(name, { name, type, labels, source });
      else factories.push({ type, labels, source }); // `new Gauge({ name, ... })` in a helper
    });
    // Names passed to such helpers: the file's other mpo_* string literals.
    if (factories.length > 0) {
      const same = factories.every((f) => f.type === factories[0]!.type);
      const sameLabels = factories.every(
        (f) => JSON.stringify(f.labels) === JSON.stringify(factories[0]!.labels),
      );
      for (const [, name] of text.matchAll(/['"`](mpo_[a-z0-9_]*[a-z0-9])['"`]/g))
        if (!out.has(name!))
          out.set(name!, {
            name: name!,
            type: same ? factories[0]!.type : 'gauge',
            labels: same && sameLabels ? factories[0]!.labels : null,
            source,
          });
    }
    // prom-client's process and Node.js metrics, under the prefix the code gives them.
    for (const d of text.matchAll(/collectDefaultMetrics\(\s*(\{[^}]*\})?/g)) {
      const prefix = /prefix:\s*['"`]([^'"`]*)['"`]/.exec(d[1] ?? '')?.[1] ?? '';
      let pkg = dirname(file);
      while (!existsSync(join(pkg, 'package.json'))) pkg = dirname(pkg);
      const prom = createRequire(join(pkg, 'package.json'))('prom-client');
      const register = new prom.Registry();
      prom.collectDefaultMetrics({ register, prefix });
      for (const m of (await register.getMetricsAsJSON()) as { name: string; type: MetricType }[])
        out.set(m.name, { name: m.name, type: m.type, labels: null, source: `${source} (default metrics)` });
      register.clear();
    }
  }
  return out;
}

interface Series {
  metric: string;
  labels: string[] | null;
  proposed: boolean;
}

function seriesOf(metrics: Iterable<Metric>, proposed: boolean): Map<string, Series> {
  const out = new Map<string, Series>();
  const add = (name: string, m: Metric, extra: string[] = []) =>
    out.set(name, { metric: m.name, labels: m.labels && [...m.labels, ...extra], proposed });
  for (const m of metrics) {
    if (m.type === 'histogram') {
      add(`${m.name}_bucket`, m, ['le']);
      add(`${m.name}_sum`, m);
      add(`${m.name}_count`, m);
    } else if (m.type === 'summary') {
      add(m.name, m, ['quantile']);
      add(`${m.name}_sum`, m);
      add(`${m.name}_count`, m);
    } else add(m.name, m);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PromQL: the metric selectors of an expression (name + matcher labels) and its grouping labels.

const PROMQL_WORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

function analyzePromql(expr: string) {
  const selectors: { name: string; labels: string[] }[] = [];
  const grouping: string[] = [];
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}/g, (_, name: string | undefined, body: string) => {
    const labels = [...body.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!);
    if (name) selectors.push({ name, labels });
    else throw new Error(`selector without a metric name in ${expr}`);
    return ` ${name} `;
  });
  s = s.replace(/\[[^\]]*\]/g, ' '); // ranges, subqueries ($__rate_interval included)
  s = s.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, body: string) => {
    grouping.push(
      ...body
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    );
    return ' ';
  });
  for (const m of s.matchAll(/(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    if (m[2] || PROMQL_WORDS.has(m[1]!.toLowerCase())) continue; // a function, or a keyword
    selectors.push({ name: m[1]!, labels: [] });
  }
  return { selectors, grouping };
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests.

interface Doc {
  file: string;
  obj: Y;
}
const yamlFiles = walk(k8sDir, (f) => /\.ya?ml$/.test(f));
const docs: Doc[] = yamlFiles.flatMap((file) =>
  parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${relative(root, file)}: ${d.errors[0]!.message}`);
    return { file: relative(k8sDir, file), obj: d.toJS() };
  }),
);
const objects = docs.filter((d) => d.obj && d.obj.kind !== 'Kustomization' && d.obj.kind !== 'Component');
const kustomization = parse(readFileSync(join(k8sDir, 'kustomization.yaml'), 'utf8'));
const all = (kind: string) => objects.filter((d) => d.obj.kind === kind).map((d) => d.obj);
const one = (kind: string, name: string) => {
  const found = all(kind).filter((o) => o.metadata.name === name);
  expect(found, `${kind}/${name}`).toHaveLength(1);
  return found[0];
};
const WORKLOADS = ['Deployment', 'DaemonSet', 'StatefulSet', 'Job'];
const workloads = objects.filter((d) => WORKLOADS.includes(d.obj.kind)).map((d) => d.obj);
const podSpec = (w: Y) => w.spec.template.spec;
const containersOf = (w: Y): Y[] => [...(podSpec(w).initContainers ?? []), ...podSpec(w).containers];
const configMap = () => one('ConfigMap', 'mpo-config');
const appImages = new Set((kustomization.images ?? []).map((i: Y) => i.name));
const isApp = (c: Y) => appImages.has(c.image);

function matches(selector: Y, labels: Record<string, string>): boolean {
  const ml = selector.matchLabels ?? (selector.matchExpressions ? {} : selector);
  if (!Object.entries(ml).every(([k, v]) => labels[k] === v)) return false;
  return (selector.matchExpressions ?? []).every((e: Y) => {
    const v = labels[e.key];
    if (e.operator === 'In') return e.values.includes(v);
    if (e.operator === 'NotIn') return !e.values.includes(v);
    if (e.operator === 'Exists') return v !== undefined;
    return v === undefined;
  });
}

/** Environment of a container: its env plus the keys of the ConfigMaps / Secrets it imports. */
function envOf(c: Y): Map<string, Y> {
  const env = new Map<string, Y>();
  for (const from of c.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const src = objects.find(
      (d) => d.obj.kind === (from.configMapRef ? 'ConfigMap' : 'Secret') && d.obj.metadata.name === ref.name,
    )?.obj;
    if (!src && ref.optional) continue;
    expect(src, `envFrom ${ref.name}`).toBeDefined();
    for (const [k, v] of Object.entries({ ...src.data, ...src.stringData })) env.set(k, v);
  }
  for (const e of c.env ?? []) env.set(e.name, e.value ?? e.valueFrom);
  return env;
}

const bytes = (q: string | number): number => {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m[1]) * (m[2] ? unit[m[2] as keyof typeof unit] : 1);
};

/** Every environment variable name the code reads (process.env.X, env.X, env['X'], fn(env, 'X')). */
const envReadByCode = new Set(
  sourceFiles.flatMap((f) =>
    [
      ...readFileSync(f, 'utf8').matchAll(
        /env\.([A-Z][A-Z0-9_]*)|env\[\s*['"]([A-Z][A-Z0-9_]*)['"]\s*\]|\(\s*env\s*,\s*['"]([A-Z][A-Z0-9_]*)['"]/g,
      ),
    ].map((m) => m[1] ?? m[2] ?? m[3]!),
  ),
);
/** Variables our containers set that are read by Node, npm or the NVIDIA runtime, not by our code. */
const PLATFORM_ENV = new Set([
  'NODE_ENV', // Node / libraries: production mode
  'HOME', // npm's cache and logs, libtorch / CUDA caches: the writable /tmp
  'CUDA_CACHE_PATH', // CUDA's JIT kernel cache
  'NVIDIA_DRIVER_CAPABILITIES', // NVIDIA container runtime: mount nvidia-smi (utility) besides compute
]);

describe('infra/k8s manifests', () => {
  it('parse, and each kustomization lists exactly the manifests beside it', () => {
    expect(objects.length).toBeGreaterThan(10);
    const dirs = new Set(yamlFiles.map((f) => dirname(f)));
    for (const dir of dirs) {
      const kf = join(dir, 'kustomization.yaml');
      expect(existsSync(kf), `${relative(root, dir)} has a kustomization.yaml`).toBe(true);
      const k = parse(readFileSync(kf, 'utf8'));
      expect(k.kind).toBe(dir === k8sDir ? 'Kustomization' : 'Component');
      const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
      expect([...k.resources].sort(), relative(root, dir)).toEqual(files.sort());
    }
    // Every optional component is offered in the root kustomization and explained in the README.
    const rootText = readFileSync(join(k8sDir, 'kustomization.yaml'), 'utf8');
    const readme = read('infra/README.md');
    for (const c of readdirSync(join(k8sDir, 'components'))) {
      expect(rootText, `components/${c} offered in kustomization.yaml`).toContain(`components/${c}`);
      expect(readme, `components/${c} in infra/README.md`).toContain(`components/${c}`);
    }
    expect(readme).toContain('kubectl apply -k infra/k8s');
  });

  it('puts every object in the kustomization namespace, with unique names per kind', () => {
    const ns = kustomization.namespace;
    expect(one('Namespace', ns)).toBeDefined();
    const seen = new Set<string>();
    for (const { file, obj } of objects) {
      expect(obj.apiVersion && obj.kind && obj.metadata?.name, file).toBeTruthy();
      if (obj.kind !== 'Namespace')
        expect(obj.metadata.namespace, `${obj.kind}/${obj.metadata.name}`).toBe(ns);
      const key = `${obj.kind}/${obj.metadata.name}`;
      expect(seen.has(key), `${key} defined twice`).toBe(false);
      seen.add(key);
    }
  });

  it('matches every selector to the labels of a workload, and every Service to a container port', () => {
    for (const w of workloads) {
      if (w.kind === 'Job') continue;
      expect(matches(w.spec.selector, w.spec.template.metadata.labels), `${w.kind}/${w.metadata.name}`).toBe(
        true,
      );
      for (const other of workloads.filter((o) => o !== w && o.kind !== 'Job'))
        expect(
          matches(w.spec.selector, other.spec.template.metadata.labels),
          `${w.kind}/${w.metadata.name} selects ${other.metadata.name}`,
        ).toBe(false);
    }
    for (const svc of all('Service')) {
      const targets = workloads.filter((w) => matches(svc.spec.selector, w.spec.template.metadata.labels));
      expect(targets, `Service/${svc.metadata.name} selects one workload`).toHaveLength(1);
      const ports = containersOf(targets[0]).flatMap((c) => c.ports ?? []);
      for (const p of svc.spec.ports) {
        const target = ports.find((cp: Y) => cp.name === p.targetPort || cp.containerPort === p.targetPort);
        expect(target, `Service/${svc.metadata.name} port ${p.port} -> ${p.targetPort}`).toBeDefined();
      }
    }
    for (const ss of all('StatefulSet')) expect(one('Service', ss.spec.serviceName)).toBeDefined();
    for (const pdb of all('PodDisruptionBudget'))
      expect(workloads.some((w) => matches(pdb.spec.selector, w.spec.template.metadata.labels))).toBe(true);
    for (const np of all('NetworkPolicy')) {
      expect(workloads.some((w) => matches(np.spec.podSelector, w.spec.template.metadata.labels))).toBe(true);
      for (const rule of np.spec.ingress)
        for (const from of rule.from)
          for (const e of from.podSelector?.matchExpressions ?? [])
            for (const v of e.values)
              expect(
                workloads.some((w) => w.spec.template.metadata.labels[e.key] === v),
                `NetworkPolicy/${np.metadata.name} admits ${e.key}=${v}`,
              ).toBe(true);
    }
    for (const sm of all('ServiceMonitor')) {
      const svc = all('Service').find((s) => matches(sm.spec.selector, s.metadata.labels));
      expect(svc, `ServiceMonitor/${sm.metadata.name}`).toBeDefined();
      for (const ep of sm.spec.endpoints) {
        expect(svc.spec.ports.map((p: Y) => p.name)).toContain(ep.port);
        expect(ep.path).toBe('/metrics');
        const ref = ep.authorization.credentials;
        expect(one('Secret', ref.name).stringData[ref.key], 'metrics token Secret').toBeDefined();
      }
    }
  });

  it('runs every pod non-root, without privilege escalation or capabilities, with resources', () => {
    expect(workloads.length).toBeGreaterThanOrEqual(5);
    for (const w of workloads) {
      const spec = podSpec(w);
      const where = `${w.kind}/${w.metadata.name}`;
      expect(spec.securityContext.runAsNonRoot, where).toBe(true);
      expect(spec.securityContext.runAsUser, where).toBeGreaterThan(0);
      expect(spec.securityContext.seccompProfile.type, where).toBe('RuntimeDefault');
      expect(spec.automountServiceAccountToken, where).toBe(false);
      for (const c of containersOf(w)) {
        expect(c.securityContext.allowPrivilegeEscalation, where).toBe(false);
        expect(c.securityContext.capabilities.drop, where).toEqual(['ALL']);
        expect(c.resources.requests.memory && c.resources.limits.memory, `${where} memory`).toBeTruthy();
        const mounts = (c.volumeMounts ?? []).map((m: Y) => m.name);
        for (const m of mounts)
          expect(
            [...(spec.volumes ?? []), ...(w.spec.volumeClaimTemplates ?? []).map((v: Y) => v.metadata)].map(
              (v: Y) => v.name,
            ),
            `${where} volume ${m}`,
          ).toContain(m);
      }
      for (const v of spec.volumes ?? [])
        if (v.persistentVolumeClaim) expect(one('PersistentVolumeClaim', v.persistentVolumeClaim.claimName));
    }
  });

  it('uses our image (built from infra/Dockerfile, named in kustomization images) or pinned Redis 7 / Postgres 16', () => {
    expect(existsSync(join(infra, 'Dockerfile'))).toBe(true);
    for (const i of kustomization.images) expect(i.newName && i.newTag, `image ${i.name}`).toBeTruthy();
    const compose = parse(read('docker-compose.yml'));
    const major = (image: string) => /:(\d+)/.exec(image)?.[1];
    for (const w of workloads)
      for (const c of containersOf(w)) {
        if (isApp(c)) continue;
        const [repo] = c.image.split(':');
        expect(['redis', 'postgres'], `${w.metadata.name}: image ${c.image}`).toContain(repo);
        expect(major(c.image), `${c.image} has the major version of docker-compose.yml's`).toBe(
          major(compose.services[repo].image),
        );
      }
    const used = new Set(workloads.flatMap((w) => containersOf(w).map((c) => c.image)));
    for (const name of appImages) expect(used.has(name), `kustomization image ${name} is used`).toBe(true);
  });

  it('runs the root package scripts and sets only variables the code reads, from existing keys', () => {
    const scripts = JSON.parse(read('package.json')).scripts;
    const cmd = (name: string) => containersOf(one(name === 'worker' ? 'DaemonSet' : 'Deployment', name))[0]!;
    expect(cmd('api').command.join(' ')).toBe(scripts.api);
    expect(cmd('worker').command.join(' ')).toBe(scripts.worker);
    const migrate = containersOf(one('Job', 'migrate'))[0]!;
    expect(migrate.command).toEqual(['npm', 'run', 'db:migrate']);
    expect(scripts['db:migrate']).toBeDefined();
    for (const w of workloads)
      for (const c of containersOf(w).filter(isApp)) {
        for (const [name, v] of envOf(c)) {
          expect(
            envReadByCode.has(name) || PLATFORM_ENV.has(name),
            `${w.metadata.name}: ${name} is read`,
          ).toBe(true);
          const ref = v?.secretKeyRef ?? v?.configMapKeyRef;
          if (ref) {
            const src = one(v.secretKeyRef ? 'Secret' : 'ConfigMap', ref.name);
            expect({ ...src.data, ...src.stringData }, `${name} <- ${ref.name}.${ref.key}`).toHaveProperty(
              ref.key,
            );
          }
        }
        const env = envOf(c);
        for (const required of ['DATABASE_URL'])
          expect(env.has(required), `${w.metadata.name}: ${required}`).toBe(true);
      }
  });

  it('api: Deployment of 2, probes on /healthz and /readyz, env from ConfigMap and Secret, Service 80 -> 8080', () => {
    const api = one('Deployment', 'api');
    expect(api.spec.replicas).toBe(2);
    const c = containersOf(api)[0]!;
    const port = c.ports.find((p: Y) => p.name === 'http');
    expect(port.containerPort).toBe(8080);
    const env = envOf(c);
    expect(env.get('PORT')).toBe(String(port.containerPort));
    expect(env.get('HOST'), 'listen beyond localhost').toBe('0.0.0.0');
    expect(env.get('REDIS_URL')).toBe(configMap().data.REDIS_URL);
    for (const k of ['DATABASE_URL', 'MPO_ADMIN_TOKEN'])
      expect(env.get(k).secretKeyRef.name, k).toBe('mpo-secrets');
    expect(c.envFrom.map((e: Y) => e.configMapRef?.name)).toContain('mpo-config');
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    // /readyz needs a bearer token, which an httpGet probe cannot take from a Secret.
    const ready = c.readinessProbe.exec.command.join(' ');
    expect(ready).toContain('127.0.0.1:8080/readyz');
    expect(ready).toContain('process.env.MPO_ADMIN_TOKEN');
    expect(c.resources.requests.cpu).toBeDefined();
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);

    const svc = one('Service', 'api');
    expect(svc.spec.type).toBe('ClusterIP');
    expect(svc.spec.ports).toHaveLength(1);
    expect(svc.spec.ports[0].port).toBe(80);
    expect(svc.spec.ports[0].targetPort).toBe('http');

    const ann = api.spec.template.metadata.annotations;
    expect(ann['prometheus.io/scrape']).toBe('true');
    expect(ann['prometheus.io/port']).toBe(String(port.containerPort));
    expect(ann['prometheus.io/path']).toBe('/metrics');
  });

  it('GPU workers run the image built from infra/Dockerfile.gpu, a CUDA PyTorch 2.x base with the engine linked to it', () => {
    // Issue 15 item 5: the CPU image (Debian's CPU libtorch) would leave the GPUs unused.
    const gpu = read('infra/Dockerfile.gpu');
    const from = /^FROM\s+(\S+)/m.exec(gpu)?.[1] ?? '';
    expect(from, 'a PyTorch image with CUDA').toMatch(/^pytorch\/pytorch:2\.\d+\.\d+-cuda\d+/);
    // LIBTORCH = the image's torch/ folder, the variable packages/engine/scripts/build-addon.mjs reads.
    expect(gpu).toMatch(
      /LIBTORCH="\$\(python3 -c 'import torch, os; print\(os\.path\.dirname\(torch\.__file__\)\)'\)"/,
    );
    expect(read('packages/engine/scripts/build-addon.mjs')).toContain('process.env.LIBTORCH');
    expect(gpu).toContain('libtorch_cuda.so');
    const worker = containersOf(one('DaemonSet', 'worker'))[0]!;
    expect(worker.image).toBe('mpo-gpu');
    // kustomization.yaml maps mpo-gpu to the registry; its comment says which recipe builds it.
    const k = read('infra/k8s/kustomization.yaml');
    const entry = k.indexOf('- name: mpo-gpu');
    expect(entry).toBeGreaterThan(0);
    expect(k.slice(k.lastIndexOf('newTag', entry), entry)).toContain('infra/Dockerfile.gpu');
    // The CPU image stays Debian's CPU libtorch, for the API and CPU workers.
    expect(read('infra/Dockerfile')).toContain('libtorch-dev');
    expect(read('infra/README.md')).toMatch(/no path of this platform has yet run on a GPU/);
  });

  it('worker: DaemonSet on GPU nodes, nvidia.com/gpu, a Memory /dev/shm sized for the all-reduce, a long grace, shared artifacts', () => {
    const w = one('DaemonSet', 'worker');
    const spec = podSpec(w);
    const terms = spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
    expect(JSON.stringify(terms)).toContain('nvidia.com/gpu');
    expect(spec.tolerations).toContainEqual(
      expect.objectContaining({ key: 'nvidia.com/gpu', operator: 'Exists' }),
    );
    const c = containersOf(w)[0]!;
    const gpus = c.resources.limits['nvidia.com/gpu'];
    expect(Number.isInteger(gpus) && gpus >= 1, 'whole GPUs').toBe(true);
    if (c.resources.requests['nvidia.com/gpu'] !== undefined)
      expect(c.resources.requests['nvidia.com/gpu']).toBe(gpus);
    const env = envOf(c);
    // Slots come from nvidia-smi, which lists exactly the GPUs the device plugin gave the pod.
    expect(env.has('MPO_DEVICES')).toBe(false);
    expect(env.get('NVIDIA_DRIVER_CAPABILITIES')).toContain('utility');

    // /dev/shm: one segment per multi-rank trial = header + ranks x (2 small slots + staging), with
    // the defaults of packages/allreduce/native/shm_group.h; at most one rank per GPU, at most
    // gpus/2 multi-rank groups. The header holds a 1 KiB abort message and a 128-byte block per
    // possible rank, page-aligned.
    const h = read('packages/allreduce/native/shm_group.h');
    const shift = (name: string) => {
      const m = new RegExp(`${name}\\s*=\\s*(\\d+)\\s*<<\\s*(\\d+)`).exec(h);
      if (!m) throw new Error(`shm_group.h: no default for ${name}`);
      return Number(m[1]) * 2 ** Number(m[2]);
    };
    const small = Number(env.get('MPO_ALLREDUCE_SMALL_BYTES') ?? shift('smallBytes'));
    const staging = Number(env.get('MPO_ALLREDUCE_STAGING_BYTES') ?? shift('stagingBytes'));
    const maxRanks = Number(/kMaxRanks\s*=\s*(\d+)/.exec(h)?.[1]);
    const header = Math.ceil((1024 + 128 + maxRanks * 128) / 4096) * 4096;
    const needed = gpus * (2 * small + staging) + Math.floor(gpus / 2) * header;
    const shmMount = c.volumeMounts.find((m: Y) => m.mountPath === '/dev/shm');
    const shm = spec.volumes.find((v: Y) => v.name === shmMount.name).emptyDir;
    expect(shm.medium).toBe('Memory');
    expect(bytes(shm.sizeLimit), `/dev/shm ${shm.sizeLimit} >= ${needed} bytes`).toBeGreaterThanOrEqual(
      needed,
    );
    // tmpfs pages count against the container's memory limit.
    expect(bytes(shm.sizeLimit)).toBeLessThan(bytes(c.resources.limits.memory) / 4);

    // SIGTERM: trainers finish their step and checkpoint within MPO_STOP_GRACE_MS, then the agent
    // hands the jobs back and flushes metrics; Kubernetes must not SIGKILL it before.
    const defaultGrace = Number(
      /MPO_STOP_GRACE_MS,\s*([\d_]+)/.exec(read('apps/worker/src/config.ts'))![1]!.replaceAll('_', ''),
    );
    const grace = Number(env.get('MPO_STOP_GRACE_MS') ?? defaultGrace);
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(grace / 1000 + 15);
    // The trial lock names its owner by hostname (the pod's) and pid; PID 1 of its own namespace
    // would look alive to the agent that replaces it after a container restart.
    expect(spec.shareProcessNamespace).toBe(true);

    // Artifacts on a volume every node shares: a re-queued trial resumes from its checkpoints elsewhere.
    const mountOf = (path: string) => c.volumeMounts.find((m: Y) => m.mountPath === path);
    const volumeOf = (path: string) => spec.volumes.find((v: Y) => v.name === mountOf(path).name);
    for (const [variable, path] of [
      ['MPO_ARTIFACT_ROOT', env.get('MPO_ARTIFACT_ROOT')],
      ['MPO_MODEL_ROOT', env.get('MPO_MODEL_ROOT')],
      ['MPO_DATA_ROOT', env.get('MPO_DATA_ROOT')],
    ]) {
      expect(mountOf(path), `${variable}=${path} is mounted`).toBeDefined();
      const claim = one('PersistentVolumeClaim', volumeOf(path).persistentVolumeClaim.claimName);
      expect(claim.spec.accessModes, `${variable} volume`).toContain('ReadWriteMany');
    }
    expect(mountOf(env.get('MPO_ARTIFACT_ROOT')).readOnly).toBeFalsy();
  });

  it('redis: StatefulSet with noeviction and AOF on a persistent volume, behind the Service of REDIS_URL', () => {
    const r = one('StatefulSet', 'redis');
    const c = containersOf(r)[0]!;
    expect(c.image).toMatch(/^redis:7/);
    const args: string[] = [...(c.command ?? []), ...(c.args ?? [])];
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    expect(args[args.indexOf('--appendonly') + 1]).toBe('yes');
    const dir = args[args.indexOf('--dir') + 1];
    const mount = c.volumeMounts.find((m: Y) => m.mountPath === dir);
    expect(
      r.spec.volumeClaimTemplates.map((v: Y) => v.metadata.name),
      'AOF dir on a claim',
    ).toContain(mount.name);
    // maxmemory leaves room under the container limit for the AOF rewrite's fork.
    expect(
      bytes(args[args.indexOf('--maxmemory') + 1]!.replace(/gb$/, 'Gi').replace(/mb$/, 'Mi')),
    ).toBeLessThan(bytes(c.resources.limits.memory));
    const url = new URL(configMap().data.REDIS_URL);
    const svc = one('Service', url.hostname);
    expect(svc.spec.ports.map((p: Y) => p.port)).toContain(Number(url.port));
    expect(matches(svc.spec.selector, r.spec.template.metadata.labels)).toBe(true);
  });

  it('postgres: external DATABASE_URL by default, Postgres 16 in the optional component', () => {
    const secret = one('Secret', 'mpo-secrets');
    expect(secret.stringData.DATABASE_URL).toMatch(/^postgresql:\/\//);
    const pg = one('StatefulSet', 'postgres');
    expect(docs.find((d) => d.obj === pg)!.file).toBe('components/postgres/postgres.yaml');
    expect(kustomization.resources.join(' '), 'Postgres is not in the base').not.toContain('postgres');
    const c = containersOf(pg)[0]!;
    expect(Number(/^postgres:(\d+)/.exec(c.image)?.[1])).toBeGreaterThanOrEqual(15);
    expect(envOf(c).get('POSTGRES_PASSWORD').secretKeyRef).toEqual({
      name: 'mpo-secrets',
      key: 'POSTGRES_PASSWORD',
    });
    const svc = one('Service', 'postgres');
    expect(svc.spec.ports[0].port).toBe(5432);
    expect(read('infra/README.md')).toMatch(/external/i);
  });

  it('holds placeholders only in Secret templates, which an unfilled deployment refuses', () => {
    for (const s of all('Secret')) {
      expect(s.data, `Secret/${s.metadata.name}: stringData only`).toBeUndefined();
      for (const [k, v] of Object.entries(s.stringData))
        expect(String(v), `Secret/${s.metadata.name}.${k} is a placeholder`).toContain('CHANGE_ME');
    }
    // The API refuses an admin token under 16 characters, so the template cannot start it.
    expect(read('apps/api/src/plugins/db.ts')).toMatch(/adminToken\.length < 16/);
    expect(one('Secret', 'mpo-secrets').stringData.MPO_ADMIN_TOKEN.length).toBeLessThan(16);
  });
});

// ---------------------------------------------------------------------------------------------
// Prometheus, alerts, Grafana: PromQL against the metric catalogue.

let catalogue: Map<string, Series>;
let exported: Map<string, Metric>;
const prom = parse(read('infra/prometheus/prometheus.yml'));
const alerts = parse(read('infra/prometheus/alerts.yml'));
const dashboard = JSON.parse(read('infra/grafana/mpo-dashboard.json'));
/** Labels Prometheus attaches to every scraped series (job, instance, static and relabelled ones). */
const targetLabels = new Set<string>([
  'job',
  'instance',
  ...prom.scrape_configs.flatMap((j: Y) => [
    ...(j.static_configs ?? []).flatMap((s: Y) => Object.keys(s.labels ?? {})),
    ...(j.relabel_configs ?? [])
      .map((r: Y) => r.target_label)
      .filter((l: string) => l && !l.startsWith('__')),
  ]),
]);
const usedMetrics = new Set<string>();

beforeAll(async () => {
  exported = await exportedMetrics();
  const proposed = Object.entries(PROPOSED).map(([name, p]) => ({ name, ...p, source: 'PROPOSED' }));
  catalogue = new Map([
    ...seriesOf(proposed, true),
    ...seriesOf(exported.values(), false),
    ['up', { metric: 'up', labels: [], proposed: false }], // Prometheus' own, per target
  ]);
});

/** Problems of one PromQL expression: unknown metrics, unknown labels (matchers, by, legends). */
function promqlProblems(where: string, expr: string, legend?: string): string[] {
  const problems: string[] = [];
  const { selectors, grouping } = analyzePromql(expr);
  if (selectors.length === 0) problems.push(`${where}: no metric in ${expr}`);
  const known = new Set(targetLabels);
  let unchecked = false;
  for (const s of selectors) {
    const series = catalogue.get(s.name);
    if (!series) {
      problems.push(`${where}: ${s.name} is exported by nothing (apps/*/src, packages/*/src) nor PROPOSED`);
      continue;
    }
    usedMetrics.add(series.metric);
    if (!series.labels) {
      unchecked = true;
      continue;
    }
    for (const l of series.labels) known.add(l);
    for (const l of s.labels)
      if (!series.labels.includes(l) && !targetLabels.has(l))
        problems.push(
          `${where}: ${s.name} has no label "${l}" (labels: ${series.labels.join(', ') || 'none'})`,
        );
  }
  const legendLabels = [...(legend ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
  if (!unchecked)
    for (const l of [...grouping, ...legendLabels])
      if (!known.has(l)) problems.push(`${where}: label "${l}" belongs to none of its metrics`);
  return problems;
}

describe('infra/prometheus', () => {
  it('scrapes the API /metrics with a bearer token: static target for compose, annotated pods on Kubernetes', () => {
    const jobs = prom.scrape_configs;
    for (const j of jobs) {
      expect(j.metrics_path ?? '/metrics', j.job_name).toBe('/metrics');
      expect(j.authorization.type, `${j.job_name}: /metrics needs a token`).toBe('Bearer');
      expect(j.authorization.credentials_file, j.job_name).toBeTruthy();
    }
    const compose = parse(read('docker-compose.yml'));
    const apiPort = compose.services.api.environment.PORT;
    const stat = jobs.find((j: Y) => j.static_configs);
    expect(stat.static_configs[0].targets).toContain(`api:${apiPort}`);
    expect(stat.static_configs[0].labels.component).toBe('api');
    const k8s = jobs.find((j: Y) => j.kubernetes_sd_configs);
    expect(k8s.kubernetes_sd_configs[0].role).toBe('pod');
    expect(k8s.kubernetes_sd_configs[0].namespaces.names).toContain(kustomization.namespace);
    const keep = k8s.relabel_configs.find((r: Y) => r.action === 'keep');
    expect(keep.source_labels).toEqual(['__meta_kubernetes_pod_annotation_prometheus_io_scrape']);
    expect(keep.regex).toBe('true');
    const component = k8s.relabel_configs.find((r: Y) => r.target_label === 'component');
    expect(component.source_labels).toEqual(['__meta_kubernetes_pod_label_app_kubernetes_io_component']);
    for (const f of prom.rule_files) expect(existsSync(join(infra, 'prometheus', f)), f).toBe(true);
  });

  it('gives every alert rule an expression, a for, a severity and a summary', () => {
    const rules = alerts.groups.flatMap((g: Y) => g.rules);
    expect(rules.length).toBeGreaterThanOrEqual(5);
    const names = rules.map((r: Y) => r.alert);
    expect(new Set(names).size, 'unique alert names').toBe(names.length);
    for (const r of rules) {
      expect(r.expr, r.alert).toBeTruthy();
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info'], r.alert).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).toBeTruthy();
    }
    // What the issue asks to be alerted on.
    const exprs = rules.map((r: Y) => String(r.expr)).join('\n');
    expect(exprs).toMatch(/deriv\([^\n]*mpo_queue_jobs\{state=~"waiting/); // backlog growing
    expect(exprs).toContain('mpo_queue_oldest_waiting_seconds'); // oldest waiting job
    expect(exprs).toContain('mpo_trial_outcomes_total{outcome="FAILED"}'); // failed trials
    expect(exprs).toContain('mpo_worker_agents_online'); // no agents
    expect(exprs).toContain('status_code=~"5.."'); // API 5xx
  });

  it('uses only metrics and labels that are exported (or PROPOSED)', () => {
    const rules = alerts.groups.flatMap((g: Y) => g.rules);
    const problems = rules.flatMap((r: Y) => promqlProblems(`alert ${r.alert}`, r.expr));
    expect(problems).toEqual([]);
  });
});

describe('infra/grafana/mpo-dashboard.json', () => {
  const panels: Y[] = dashboard.panels.flatMap((p: Y) => [p, ...(p.panels ?? [])]);
  const targets = panels.flatMap((p) => (p.targets ?? []).map((t: Y) => ({ panel: p, t })));

  it('is a dashboard with unique panel ids that fit the grid, and a Prometheus datasource variable', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid && dashboard.title).toBeTruthy();
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size, 'unique panel ids').toBe(ids.length);
    for (const p of panels) expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    const vars = dashboard.templating.list;
    const ds = vars.find((v: Y) => v.type === 'datasource');
    expect(ds.query).toBe('prometheus');
    for (const p of panels.filter((p) => p.type !== 'row'))
      expect(p.datasource.uid, p.title).toBe(`\${${ds.name}}`);
    for (const { panel, t } of targets) {
      expect(t.datasource.uid, panel.title).toBe(`\${${ds.name}}`);
      expect(t.expr, panel.title).toBeTruthy();
    }
    for (const p of panels) {
      const refs = (p.targets ?? []).map((t: Y) => t.refId);
      expect(new Set(refs).size, `${p.title} refIds`).toBe(refs.length);
    }
  });

  it('has the panels the issue asks for', () => {
    const exprs = targets.map(({ t }) => t.expr).join('\n');
    expect(exprs).toMatch(/mpo_queue_jobs\{[^}]*\}/); // queue depth by state
    expect(exprs).toMatch(/mpo_job_duration_seconds/); // job durations
    expect(exprs).toMatch(/tokens_per_second/); // tokens/s
    expect(exprs).toMatch(/allreduce/); // all-reduce bandwidth
    expect(exprs).toMatch(/mpo_trial_outcomes_total/); // trial outcomes
    expect(exprs).toMatch(/histogram_quantile\([^\n]*mpo_http_request_duration_seconds_bucket/); // HTTP latency
  });

  it('uses only metrics and labels that are exported (or PROPOSED), in panels and variables', () => {
    const problems = targets.flatMap(({ panel, t }) =>
      promqlProblems(`panel "${panel.title}" ${t.refId}`, t.expr, t.legendFormat),
    );
    for (const v of dashboard.templating.list.filter((v: Y) => v.type === 'query')) {
      const q = typeof v.query === 'string' ? v.query : v.query.query;
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q.trim());
      if (m) problems.push(...promqlProblems(`variable ${v.name}`, `max by (${m[2]}) (${m[1]})`));
      else problems.push(...promqlProblems(`variable ${v.name}`, q));
    }
    expect(problems).toEqual([]);
  });
});

describe('metric catalogue', () => {
  it('reads the API metrics from the code', () => {
    // Guards the extraction itself: if it broke, everything would look unknown or proposed.
    for (const name of ['mpo_http_request_duration_seconds', 'mpo_queue_jobs', 'mpo_trial_outcomes_total'])
      expect(exported.get(name)?.source, name).toBe('apps/api/src/plugins/metrics.ts');
    expect(exported.get('mpo_queue_jobs')?.labels).toEqual(['queue', 'state']);
    expect(exported.get('mpo_api_process_resident_memory_bytes')?.type).toBe('gauge');
  });

  it('keeps PROPOSED to metrics that are used and not exported yet', () => {
    for (const r of alerts.groups.flatMap((g: Y) => g.rules)) promqlProblems(r.alert, r.expr);
    for (const p of dashboard.panels) for (const t of p.targets ?? []) promqlProblems(p.title, t.expr);
    for (const name of Object.keys(PROPOSED)) {
      expect(
        exported.has(name),
        `${name} is exported now: remove it from PROPOSED in tests/infra.test.ts`,
      ).toBe(false);
      expect(usedMetrics.has(name), `${name} is in PROPOSED but no panel or alert uses it`).toBe(true);
    }
  });
});

describe('infra/docker-compose.monitoring.yml', () => {
  const text = read('infra/docker-compose.monitoring.yml');
  const monitoring = parse(text);

  it('mounts the Prometheus and Grafana files of infra/ and the token the scrape job reads', () => {
    for (const s of Object.values<Y>(monitoring.services))
      for (const v of s.volumes ?? []) {
        const [src] = String(v).split(':');
        if (src!.startsWith('.')) expect(existsSync(join(root, src!)), `${v}`).toBe(true);
      }
    const stat = prom.scrape_configs.find((j: Y) => j.static_configs);
    expect(stat.authorization.credentials_file).toBe(
      `/run/secrets/${monitoring.services.prometheus.secrets[0]}`,
    );
    expect(monitoring.secrets[monitoring.services.prometheus.secrets[0]]).toBeDefined();
    const provisioning = parse(read('infra/grafana/provisioning/dashboards/mpo.yml'));
    const dashMount = monitoring.services.grafana.volumes.find((v: string) =>
      v.includes('mpo-dashboard.json'),
    );
    expect(dashMount.split(':')[1]).toBe(`${provisioning.providers[0].options.path}/mpo-dashboard.json`);
  });

  it('documents every environment variable it reads', () => {
    const header = text.split('\nservices:')[0]!;
    const used = new Set([
      ...[...text.matchAll(/\$\{([A-Z_]+)/g)].map((m) => m[1]!),
      ...Object.values<Y>(monitoring.secrets ?? {}).map((s) => s.environment),
    ]);
    for (const v of used) expect(header, `${v} documented in the header`).toContain(v);
  });
});
