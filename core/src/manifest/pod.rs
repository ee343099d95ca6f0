//! The Pod's shape, as one table of fields per object.
//!
//! This module deals with mapping Kubernetes field names onto the [`Pod`] model. Each
//! object of the model lists its fields once ([`Object::fields`]): the field ([`F`], which
//! is also the key's spelling and the error path's segment) and how its value is read
//! ([`Kind`]). One walker ([`object`]) reads any mapping against such a table: scalars with
//! the typed readers of [`super::decode`], stored by the object's [`Object::set`]; lists,
//! nested objects and checks by its [`Object::nested`]; keys naming API objects are
//! rejected. Unknown keys return `false` (warned about and skipped by the decoder). One
//! walker and small tables instead of a closure per object keep the firmware image small.

use super::decode::{Decoder, Key};
use super::error::{ApiRef, Error, ErrorKind, Invalid};
use super::event::{Events, Mark};
use super::model::*;
use super::path::{FieldPath, F};
use crate::config::{Limit, MAX_LABELS, MAX_SMALL_LIST};
use heapless::Vec;

type Result<T> = core::result::Result<T, Error>;
type D<'a, 'w, R> = Decoder<'a, 'w, R>;

fn required(path: FieldPath, mark: Mark) -> Error {
    Error::new(ErrorKind::Required, path, mark)
}

/// Fields keel knows and ignores on purpose without a warning.
fn silently_ignored(key: &str) -> bool {
    matches!(key, "creationTimestamp" | "status")
}

/// A string and where it was written.
pub(crate) type Located = (Str, Mark);

/// How a field's value is read.
#[derive(Clone, Copy)]
enum Kind {
    /// A string (`null`: not written).
    Str,
    /// An integer.
    Int,
    /// A boolean.
    Bool,
    /// A quantity (`500m`, `128Mi`).
    Quantity,
    /// A port number or name.
    IntOrStr,
    /// One of these spellings (a Kubernetes enum's table).
    Enum(&'static [&'static str]),
    /// A reference to an API object: rejected at the key.
    Api(ApiRef),
    /// Read by the object's own [`Object::nested`]: lists, objects, values with checks.
    Nested,
}

/// A scalar read for a field, handed to [`Object::set`].
#[derive(Clone, Copy)]
enum Value {
    Str(Option<Str>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Quantity(Option<Quantity>),
    IntOrStr(Option<IntOrStr>),
    /// The index of the spelling in the field's table.
    Enum(Option<usize>),
}

impl Value {
    fn str(self) -> Option<Str> {
        match self {
            Value::Str(s) => s,
            _ => None,
        }
    }
    /// A string that is required if present: `null` is the empty string.
    fn text(self) -> Str {
        self.str().unwrap_or(Str::EMPTY)
    }
    fn int(self) -> Option<i64> {
        match self {
            Value::Int(i) => i,
            _ => None,
        }
    }
    /// An integer whose `null` is 0.
    fn int_or_zero(self) -> i64 {
        self.int().unwrap_or(0)
    }
    fn bool(self) -> Option<bool> {
        match self {
            Value::Bool(b) => b,
            _ => None,
        }
    }
    /// A boolean whose `null` is false.
    fn flag(self) -> bool {
        self.bool().unwrap_or(false)
    }
    fn quantity(self) -> Option<Quantity> {
        match self {
            Value::Quantity(q) => q,
            _ => None,
        }
    }
    fn int_or_str(self) -> Option<IntOrStr> {
        match self {
            Value::IntOrStr(v) => v,
            _ => None,
        }
    }
    fn index(self) -> Option<usize> {
        match self {
            Value::Enum(i) => i,
            _ => None,
        }
    }
    /// The enum variant read, from the enum's `ALL` (in the order of its `NAMES`).
    fn pick<E: Copy>(self, all: &[E]) -> Option<E> {
        all.get(self.index()?).copied()
    }
}

/// One object of the model as [`object`] reads it.
trait Object<'a, R: Events<'a>> {
    /// Its fields: the key (and path segment) and how the value is read.
    fn fields(&self) -> &'static [(F, Kind)];
    /// Stores the scalar read for field `f`.
    fn set(&mut self, _f: F, _v: Value) {}
    /// Reads field `f` (kind [`Kind::Nested`]) whose value is at `path`.
    fn nested(
        &mut self,
        _f: F,
        _d: &mut D<'a, '_, R>,
        _pool: &mut Pool,
        _path: FieldPath,
        _key: &Key<'a>,
    ) -> Result<()> {
        Ok(())
    }
    /// A key not in the table, in the object at `path`: true if taken.
    fn other(&mut self, _d: &mut D<'a, '_, R>, _key: &Key<'a>, _path: FieldPath) -> Result<bool> {
        Ok(false)
    }
}

/// An [`Object`] implementation from one list of the object's fields: `Field: kind` for a
/// field read by `nested` (or rejected), `Field: kind => member = conversion` for a scalar
/// stored by `set` ([`Value`]'s conversion, with its argument if it takes one). The table
/// and the stores come from the same lines, so a field is written once.
macro_rules! object {
    (
        $t:ty {
            $( $f:ident : $kind:expr $( => $member:ident = $conv:ident $( ( $arg:expr ) )? )? ),*
            $(,)?
        }
        $( nested($s:ident, $nf:ident, $d:ident, $pool:ident, $path:ident, $key:ident) $nbody:block )?
        $( other($os:ident, $od:ident, $okey:ident, $opath:ident) $obody:block )?
    ) => {
        impl<'a, R: Events<'a>> Object<'a, R> for $t {
            fn fields(&self) -> &'static [(F, Kind)] {
                &[$((F::$f, $kind)),*]
            }
            #[allow(unreachable_patterns, unused_variables)]
            fn set(&mut self, f: F, v: Value) {
                match f {
                    $($( F::$f => self.$member = v.$conv($($arg)?), )?)*
                    _ => {}
                }
            }
            $(
                fn nested(
                    &mut self,
                    $nf: F,
                    $d: &mut D<'a, '_, R>,
                    $pool: &mut Pool,
                    $path: FieldPath,
                    $key: &Key<'a>,
                ) -> Result<()> {
                    let $s = self;
                    $nbody
                }
            )?
            $(
                fn other(
                    &mut self,
                    $od: &mut D<'a, '_, R>,
                    $okey: &Key<'a>,
                    $opath: FieldPath,
                ) -> Result<bool> {
                    let $os = self;
                    $obody
                }
            )?
        }
    };
}

/// Reads the mapping at `path` into `obj`, key by key against its table.
fn object<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    obj: &mut dyn Object<'a, R>,
) -> Result<()> {
    let fields = obj.fields();
    // This closure's frame, and `field`'s, stay on the stack under every nested object:
    // the scalar reading with its temporaries is out of line (`scalar`).
    d.map(path, |d, key, p| {
        let name = key.name();
        match fields.iter().find(|(f, _)| f.name() == name) {
            Some(&(f, kind)) => field(d, pool, p, key, f, kind, obj),
            None => obj.other(d, key, p),
        }
    })
}

/// One field `f` of the object at `path`, read as `kind` says.
#[inline(never)]
fn field<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    key: &Key<'a>,
    f: F,
    kind: Kind,
    obj: &mut dyn Object<'a, R>,
) -> Result<bool> {
    match kind {
        Kind::Nested => obj.nested(f, d, pool, path.field(f), key).map(|()| true),
        Kind::Api(r) => d.api_ref(r, key, path.field(f)),
        _ => scalar(d, pool, path.field(f), kind, f, obj),
    }
}

/// A scalar field, read and stored.
#[inline(never)]
fn scalar<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    fp: FieldPath,
    kind: Kind,
    f: F,
    obj: &mut dyn Object<'a, R>,
) -> Result<bool> {
    let v = match kind {
        Kind::Str => Value::Str(d.string(pool, fp)?),
        Kind::Int => Value::Int(d.int(fp)?),
        Kind::Bool => Value::Bool(d.boolean(fp)?),
        Kind::Quantity => Value::Quantity(d.quantity(pool, fp)?),
        Kind::IntOrStr => Value::IntOrStr(d.int_or_str(pool, fp)?),
        Kind::Enum(names) => Value::Enum(d.one_of(fp, names)?),
        Kind::Api(_) | Kind::Nested => return Ok(false),
    };
    obj.set(f, v);
    Ok(true)
}

// ---- the document and metadata -------------------------------------------------------------

/// `kind` and `apiVersion`, where written.
#[derive(Default)]
struct KindVersion {
    kind: Option<Located>,
    version: Option<Located>,
}

object! {
    KindVersion { Kind: Kind::Nested, ApiVersion: Kind::Nested }
    nested(s, f, d, pool, path, key) {
        let v = d.string(pool, path)?.map(|v| (v, key.mark));
        if f == F::Kind {
            s.kind = v;
        } else {
            s.version = v;
        }
        Ok(())
    }
    // The first pass reads nothing else, and warns about nothing.
    other(_s, d, _key, path) {
        d.skip(path)?;
        Ok(true)
    }
}

/// First pass: `apiVersion` and `kind` only, so that a Deployment is named as such
/// before its spec is judged as a pod spec.
pub(crate) fn kind_and_version<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
) -> Result<(Option<Located>, Option<Located>)> {
    let mut kv = KindVersion::default();
    object(d, pool, FieldPath::ROOT, &mut kv)?;
    Ok((kv.kind, kv.version))
}

/// The document: `kind` and `apiVersion` (the caller checks them), metadata and spec.
struct Document<'p> {
    kv: KindVersion,
    meta: Metadata<'p>,
    spec: &'p mut PodSpec,
}

/// `metadata`: the pod's fields beside its spec and pool.
struct Metadata<'p> {
    name: &'p mut Str,
    namespace: &'p mut Option<Str>,
    uid: &'p mut Option<Str>,
    labels: &'p mut Vec<KeyValue, MAX_LABELS>,
    annotations: &'p mut Vec<KeyValue, MAX_LABELS>,
}

object! {
    Document<'_> {
        Kind: Kind::Nested,
        ApiVersion: Kind::Nested,
        Metadata: Kind::Nested,
        Spec: Kind::Nested,
    }
    nested(s, f, d, pool, path, key) {
        match f {
            F::Metadata => object(d, pool, path, &mut s.meta),
            F::Spec => object(d, pool, path, s.spec),
            _ => s.kv.nested(f, d, pool, path, key),
        }
    }
    other(_s, d, key, path) {
        skip_ignored(d, key, path)
    }
}

/// Skips a field keel ignores on purpose (true), or leaves an unknown one (false).
fn skip_ignored<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    key: &Key<'a>,
    path: FieldPath,
) -> Result<bool> {
    if !silently_ignored(key.name()) {
        return Ok(false);
    }
    d.skip(path)?;
    Ok(true)
}

impl<'a, R: Events<'a>> Object<'a, R> for Metadata<'_> {
    fn fields(&self) -> &'static [(F, Kind)] {
        &[
            (F::Name, Kind::Str),
            (F::Namespace, Kind::Str),
            (F::Uid, Kind::Str),
            (F::Labels, Kind::Nested),
            (F::Annotations, Kind::Nested),
        ]
    }
    fn set(&mut self, f: F, v: Value) {
        match f {
            F::Name => *self.name = v.text(),
            F::Namespace => *self.namespace = v.str(),
            _ => *self.uid = v.str(),
        }
    }
    fn nested(
        &mut self,
        f: F,
        d: &mut D<'a, '_, R>,
        pool: &mut Pool,
        path: FieldPath,
        _key: &Key<'a>,
    ) -> Result<()> {
        let out = if f == F::Labels {
            &mut *self.labels
        } else {
            &mut *self.annotations
        };
        d.string_map(pool, path, out)
    }
    fn other(&mut self, d: &mut D<'a, '_, R>, key: &Key<'a>, path: FieldPath) -> Result<bool> {
        skip_ignored(d, key, path)
    }
}

/// The whole Pod, in one pass; returns where `kind` and `apiVersion` were written (the
/// caller checks them).
pub(crate) fn pod<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pod: &mut Pod,
) -> Result<(Option<Located>, Option<Located>)> {
    let Pod {
        name,
        namespace,
        uid,
        labels,
        annotations,
        spec,
        pool,
    } = pod;
    let mut doc = Document {
        kv: KindVersion::default(),
        meta: Metadata {
            name,
            namespace,
            uid,
            labels,
            annotations,
        },
        spec,
    };
    object(d, pool, FieldPath::ROOT, &mut doc)?;
    d.finish()?;
    Ok((doc.kv.kind, doc.kv.version))
}

// ---- the pod spec -----------------------------------------------------------------------------

object! {
    PodSpec {
        Containers: Kind::Nested,
        InitContainers: Kind::Nested,
        Volumes: Kind::Nested,
        RestartPolicy: Kind::Enum(RestartPolicy::NAMES)
            => restart_policy = pick(RestartPolicy::ALL),
        TerminationGracePeriodSeconds: Kind::Int => termination_grace_period_seconds = int,
        HostNetwork: Kind::Bool => host_network = flag,
        HostPID: Kind::Bool => host_pid = flag,
        HostIPC: Kind::Bool => host_ipc = flag,
        DnsPolicy: Kind::Enum(DnsPolicy::NAMES) => dns_policy = pick(DnsPolicy::ALL),
        Hostname: Kind::Str => hostname = str,
        NodeName: Kind::Str => node_name = str,
        PriorityClassName: Kind::Str => priority_class_name = str,
        Priority: Kind::Int => priority = int,
        HostAliases: Kind::Nested,
        SecurityContext: Kind::Nested,
        Tolerations: Kind::Nested,
        ServiceAccountName: Kind::Nested,
        ServiceAccount: Kind::Nested,
    }
    nested(s, f, d, pool, path, key) {
        match f {
            F::Containers => containers(d, pool, path, &mut s.containers, Limit::Containers),
            F::InitContainers => containers(
                d,
                pool,
                path,
                &mut s.init_containers,
                Limit::InitContainers,
            ),
            F::Volumes => d.seq(path, |d, _, p, mark| {
                let v = volume(d, pool, p, mark)?;
                s.volumes
                    .push(v)
                    .map_err(|_| Error::capacity(Limit::Volumes, p, mark))
            }),
            F::HostAliases => {
                let list = &mut s.host_aliases;
                objects(d, pool, path, list, Limit::HostAliases, HostAlias::default)
            }
            F::SecurityContext => object(d, pool, path, &mut s.security_context),
            F::Tolerations => {
                let list = &mut s.tolerations;
                objects(d, pool, path, list, Limit::Tolerations, Toleration::default)
            }
            // serviceAccountName and serviceAccount.
            _ => api_ref_unless_empty(d, pool, key, path),
        }
    }
    other(_s, d, key, path) {
        if key.name() != "automountServiceAccountToken" {
            return Ok(false);
        }
        d.skip(path)?;
        Ok(true)
    }
}

/// `containers` or `initContainers`, each decoded in place (no container-sized temporary).
fn containers<'a, R: Events<'a>, const N: usize>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    list: &mut Vec<Container, N>,
    limit: Limit,
) -> Result<()> {
    d.seq(path, |d, _, p, mark| {
        list.push(Container::default())
            .map_err(|_| Error::capacity(limit, p, mark))?;
        let n = list.len();
        object(d, pool, p, &mut list[n - 1])
    })
}

/// A list of objects at `path`, each read into a fresh one (`new`) appended to `list`.
fn objects<'a, R: Events<'a>, T: Object<'a, R>, const N: usize>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    list: &mut Vec<T, N>,
    limit: Limit,
    new: fn() -> T,
) -> Result<()> {
    d.seq(path, |d, _, p, mark| {
        let mut item = new();
        object(d, pool, p, &mut item)?;
        list.push(item).map_err(|_| Error::capacity(limit, p, mark))
    })
}

/// `serviceAccountName: ""` (or null) is harmless; any other value references an API object.
fn api_ref_unless_empty<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    key: &Key<'a>,
    path: FieldPath,
) -> Result<()> {
    let start = pool.start();
    let v = d.string(pool, path)?;
    pool.truncate(start);
    match v {
        Some(s) if !s.is_empty() => d.api_ref(ApiRef::ServiceAccount, key, path).map(drop),
        _ => Ok(()),
    }
}

object! {
    HostAlias { Ip: Kind::Str => ip = text, Hostnames: Kind::Nested }
    nested(s, _f, d, pool, path, _key) {
        d.strings(pool, path, &mut s.hostnames, Limit::HostAliases)
    }
}

object! {
    Toleration {
        Key: Kind::Str => key = str,
        Operator: Kind::Str => operator = str,
        Value: Kind::Str => value = str,
        Effect: Kind::Str => effect = str,
        TolerationSeconds: Kind::Int => toleration_seconds = int,
    }
}

object! {
    PodSecurityContext {
        RunAsUser: Kind::Int => run_as_user = int,
        RunAsGroup: Kind::Int => run_as_group = int,
        RunAsNonRoot: Kind::Bool => run_as_non_root = bool,
        FsGroup: Kind::Int => fs_group = int,
        SupplementalGroups: Kind::Nested,
        SeccompProfile: Kind::Nested,
    }
    nested(s, f, d, pool, path, _key) {
        if f == F::SeccompProfile {
            s.seccomp = Some(seccomp(d, pool, path)?);
            return Ok(());
        }
        d.seq(path, |d, _, p, mark| {
            let g = d.int(p)?.unwrap_or(0);
            s.supplemental_groups
                .push(g)
                .map_err(|_| Error::capacity(Limit::SmallList, p, mark))
        })
    }
}

/// `seccompProfile`, whose `type` is required.
struct SeccompObject {
    out: Seccomp,
    seen_type: bool,
}

impl<'a, R: Events<'a>> Object<'a, R> for SeccompObject {
    fn fields(&self) -> &'static [(F, Kind)] {
        &[
            (F::Type, Kind::Enum(SeccompType::NAMES)),
            (F::LocalhostProfile, Kind::Str),
        ]
    }
    fn set(&mut self, f: F, v: Value) {
        if f == F::Type {
            self.seen_type = true;
            if let Some(k) = v.pick(SeccompType::ALL) {
                self.out.kind = k;
            }
        } else {
            self.out.localhost_profile = v.str();
        }
    }
}

#[inline(never)]
fn seccomp<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
) -> Result<Seccomp> {
    let mut s = SeccompObject {
        out: Seccomp {
            kind: SeccompType::RuntimeDefault,
            localhost_profile: None,
        },
        seen_type: false,
    };
    object(d, pool, path, &mut s)?;
    if !s.seen_type {
        return Err(required(path.field(F::Type), Mark::default()));
    }
    Ok(s.out)
}

// ---- volumes ----------------------------------------------------------------------------------

/// One `volumes` entry: a name and exactly the sources keel supports.
struct VolumeObject {
    name: Str,
    source: Option<VolumeSource>,
}

object! {
    VolumeObject {
        Name: Kind::Str => name = text,
        HostPath: Kind::Nested,
        EmptyDir: Kind::Nested,
        Secret: Kind::Api(ApiRef::Secret),
        ConfigMap: Kind::Api(ApiRef::ConfigMap),
        PersistentVolumeClaim: Kind::Api(ApiRef::PersistentVolumeClaim),
        Projected: Kind::Api(ApiRef::ProjectedVolume),
        Csi: Kind::Api(ApiRef::CsiVolume),
    }
    nested(s, f, d, pool, path, _key) {
        let mut src = SourceObject {
            emptydir: f == F::EmptyDir,
            path: Str::EMPTY,
            kind: None,
            memory: false,
            size_limit: None,
        };
        object(d, pool, path, &mut src)?;
        s.source = Some(if src.emptydir {
            VolumeSource::EmptyDir {
                memory: src.memory,
                size_limit: src.size_limit,
            }
        } else {
            VolumeSource::HostPath {
                path: src.path,
                kind: src.kind,
            }
        });
        Ok(())
    }
}

/// `hostPath` or `emptyDir`.
struct SourceObject {
    emptydir: bool,
    path: Str,
    kind: Option<HostPathType>,
    memory: bool,
    size_limit: Option<Quantity>,
}

impl<'a, R: Events<'a>> Object<'a, R> for SourceObject {
    fn fields(&self) -> &'static [(F, Kind)] {
        if self.emptydir {
            &[
                (F::Medium, Kind::Enum(&["", "Memory"])),
                (F::SizeLimit, Kind::Quantity),
            ]
        } else {
            &[
                (F::Path, Kind::Str),
                (F::Type, Kind::Enum(HostPathType::NAMES)),
            ]
        }
    }
    fn set(&mut self, f: F, v: Value) {
        match f {
            F::Path => self.path = v.text(),
            F::Type => self.kind = v.pick(HostPathType::ALL),
            F::Medium => self.memory = v.index() == Some(1),
            _ => self.size_limit = v.quantity(),
        }
    }
}

fn volume<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
) -> Result<Volume> {
    let mut v = VolumeObject {
        name: Str::EMPTY,
        source: None,
    };
    object(d, pool, path, &mut v)?;
    match v.source {
        Some(source) => Ok(Volume {
            name: v.name,
            source,
        }),
        None => Err(Error::new(
            ErrorKind::Invalid(Invalid::UnsupportedVolume),
            path,
            mark,
        )),
    }
}

// ---- containers -------------------------------------------------------------------------------

object! {
    Container {
        Name: Kind::Str => name = text,
        Image: Kind::Str => image = text,
        ImagePullPolicy: Kind::Enum(PullPolicy::NAMES)
            => image_pull_policy = pick(PullPolicy::ALL),
        Command: Kind::Nested,
        Args: Kind::Nested,
        WorkingDir: Kind::Str => working_dir = str,
        Env: Kind::Nested,
        EnvFrom: Kind::Nested,
        Ports: Kind::Nested,
        Resources: Kind::Nested,
        VolumeMounts: Kind::Nested,
        LivenessProbe: Kind::Nested,
        ReadinessProbe: Kind::Nested,
        StartupProbe: Kind::Nested,
        Lifecycle: Kind::Nested,
        SecurityContext: Kind::Nested,
        Stdin: Kind::Bool => stdin = flag,
        Tty: Kind::Bool => tty = flag,
        TerminationMessagePath: Kind::Str => termination_message_path = str,
        TerminationMessagePolicy: Kind::Enum(TerminationMessagePolicy::NAMES)
            => termination_message_policy = pick(TerminationMessagePolicy::ALL),
        RestartPolicy: Kind::Enum(ContainerRestartPolicy::NAMES)
            => restart_policy = pick(ContainerRestartPolicy::ALL),
    }
    // The larger arms are out-of-line functions: their temporaries stay out of this
    // frame, which is on the stack while any of the container's lists is read.
    nested(s, f, d, pool, path, key) {
        match f {
            F::Command => d.strings(pool, path, &mut s.command, Limit::Args),
            F::Args => d.strings(pool, path, &mut s.args, Limit::Args),
            F::Env => objects(d, pool, path, &mut s.env, Limit::Env, EnvVar::default),
            F::EnvFrom => d.seq(path, |d, _, p, _| object(d, pool, p, &mut EnvFromObject)),
            F::Ports => objects(d, pool, path, &mut s.ports, Limit::Ports, || ContainerPort {
                name: None,
                container_port: 0,
                host_port: None,
                protocol: None,
                host_ip: None,
            }),
            F::Resources => object(d, pool, path, &mut s.resources),
            F::VolumeMounts => {
                let list = &mut s.volume_mounts;
                objects(d, pool, path, list, Limit::Mounts, VolumeMount::default)
            }
            F::LivenessProbe => probe(d, pool, path, key.mark, &mut s.liveness_probe),
            F::ReadinessProbe => probe(d, pool, path, key.mark, &mut s.readiness_probe),
            F::StartupProbe => probe(d, pool, path, key.mark, &mut s.startup_probe),
            F::Lifecycle => object(d, pool, path, &mut s.lifecycle),
            _ => security_context(d, pool, path, &mut s.security_context),
        }
    }
}

/// An `envFrom` entry: it can only reference API objects.
struct EnvFromObject;

object! {
    EnvFromObject {}
    other(_s, d, key, path) {
        match key.name() {
            "configMapRef" => d.api_ref(ApiRef::ConfigMap, key, path),
            "secretRef" => d.api_ref(ApiRef::Secret, key, path),
            _ => Ok(false),
        }
    }
}

object! {
    EnvVar {
        Name: Kind::Str => name = text,
        Value: Kind::Str => value = str,
        ValueFrom: Kind::Nested,
    }
    nested(s, _f, d, pool, path, _key) {
        object(d, pool, path, &mut ValueFrom(&mut s.value_from))
    }
}

/// An env `valueFrom`: the references a static pod can resolve itself, or API objects.
struct ValueFrom<'e>(&'e mut Option<EnvSource>);

object! {
    ValueFrom<'_> {
        FieldRef: Kind::Nested,
        ResourceFieldRef: Kind::Nested,
        SecretKeyRef: Kind::Api(ApiRef::Secret),
        ConfigMapKeyRef: Kind::Api(ApiRef::ConfigMap),
    }
    nested(s, f, d, pool, path, key) {
        if f == F::FieldRef {
            object(d, pool, path, &mut FieldRefObject(&mut *s.0))?;
            if s.0.is_none() {
                return Err(required(path.field(F::FieldPath), key.mark));
            }
            return Ok(());
        }
        let mut r = ResourceRefObject {
            container: None,
            resource: None,
            divisor: None,
        };
        object(d, pool, path, &mut r)?;
        match r.resource {
            Some(resource) => {
                *s.0 = Some(EnvSource::Resource {
                    container: r.container,
                    resource,
                    divisor: r.divisor,
                });
                Ok(())
            }
            None => Err(required(path.field(F::Resource), key.mark)),
        }
    }
}

/// `fieldRef`: a `fieldPath` keel can fill in.
struct FieldRefObject<'e>(&'e mut Option<EnvSource>);

object! {
    FieldRefObject<'_> { FieldPath: Kind::Nested }
    nested(s, _f, d, _pool, path, _key) {
        let f = d.one_of(path, FieldRef::NAMES).map_err(|mut err| {
            if matches!(err.kind, ErrorKind::Invalid(Invalid::UnknownValue)) {
                err.kind = ErrorKind::Invalid(Invalid::FieldRefPath);
            }
            err
        })?;
        if let Some(f) = f.and_then(|i| FieldRef::ALL.get(i)) {
            *s.0 = Some(EnvSource::Field(*f));
        }
        Ok(())
    }
    other(_s, d, key, path) {
        if key.name() != "apiVersion" {
            return Ok(false);
        }
        d.skip(path)?;
        Ok(true)
    }
}

/// `resourceFieldRef`, whose `resource` is required.
struct ResourceRefObject {
    container: Option<Str>,
    resource: Option<ResourceName>,
    divisor: Option<Quantity>,
}

object! {
    ResourceRefObject {
        ContainerName: Kind::Str => container = str,
        Resource: Kind::Enum(ResourceName::NAMES) => resource = pick(ResourceName::ALL),
        Divisor: Kind::Quantity => divisor = quantity,
    }
}

object! {
    ContainerPort {
        Name: Kind::Str => name = str,
        ContainerPort: Kind::Int => container_port = int_or_zero,
        HostPort: Kind::Int => host_port = int,
        Protocol: Kind::Enum(Protocol::NAMES) => protocol = pick(Protocol::ALL),
        HostIP: Kind::Str => host_ip = str,
    }
}

object! {
    Resources { Requests: Kind::Nested, Limits: Kind::Nested }
    nested(s, f, d, pool, path, _key) {
        let list = if f == F::Requests {
            &mut s.requests
        } else {
            &mut s.limits
        };
        object(d, pool, path, list)
    }
}

object! {
    ResourceList {
        Cpu: Kind::Quantity => cpu = quantity,
        Memory: Kind::Quantity => memory = quantity,
        EphemeralStorage: Kind::Quantity => ephemeral_storage = quantity,
    }
}

object! {
    VolumeMount {
        Name: Kind::Str => name = text,
        MountPath: Kind::Str => mount_path = text,
        SubPath: Kind::Str => sub_path = str,
        ReadOnly: Kind::Bool => read_only = flag,
        MountPropagation: Kind::Enum(MountPropagation::NAMES)
            => propagation = pick(MountPropagation::ALL),
    }
}

object! {
    Lifecycle { PostStart: Kind::Nested, PreStop: Kind::Nested }
    nested(s, f, d, pool, path, key) {
        let out = if f == F::PostStart {
            &mut s.post_start
        } else {
            &mut s.pre_stop
        };
        handler(d, pool, path, key.mark, None, out)
    }
}

#[inline(never)]
fn security_context<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    out: &mut Option<SecurityContext>,
) -> Result<()> {
    let mut sc = SecurityContext::default();
    object(d, pool, path, &mut sc)?;
    *out = Some(sc);
    Ok(())
}

object! {
    SecurityContext {
        Privileged: Kind::Bool => privileged = bool,
        RunAsUser: Kind::Int => run_as_user = int,
        RunAsGroup: Kind::Int => run_as_group = int,
        RunAsNonRoot: Kind::Bool => run_as_non_root = bool,
        ReadOnlyRootFilesystem: Kind::Bool => read_only_root_filesystem = bool,
        AllowPrivilegeEscalation: Kind::Bool => allow_privilege_escalation = bool,
        Capabilities: Kind::Nested,
        SeccompProfile: Kind::Nested,
    }
    nested(s, f, d, pool, path, _key) {
        if f == F::SeccompProfile {
            s.seccomp = Some(seccomp(d, pool, path)?);
            return Ok(());
        }
        let mut caps = Capabilities {
            add: &mut s.cap_add,
            drop: &mut s.cap_drop,
        };
        object(d, pool, path, &mut caps)
    }
}

/// `capabilities`.
struct Capabilities<'c> {
    add: &'c mut Vec<Str, MAX_SMALL_LIST>,
    drop: &'c mut Vec<Str, MAX_SMALL_LIST>,
}

object! {
    Capabilities<'_> { Add: Kind::Nested, Drop: Kind::Nested }
    nested(s, f, d, pool, path, _key) {
        let out = if f == F::Add {
            &mut *s.add
        } else {
            &mut *s.drop
        };
        d.strings(pool, path, out, Limit::SmallList)
    }
}

// ---- probes and hooks -------------------------------------------------------------------------

/// The actions, then a probe's own fields.
const PROBE_FIELDS: &[(F, Kind)] = &[
    (F::Exec, Kind::Nested),
    (F::HttpGet, Kind::Nested),
    (F::TcpSocket, Kind::Nested),
    (F::Grpc, Kind::Nested),
    (F::Sleep, Kind::Nested),
    (F::InitialDelaySeconds, Kind::Int),
    (F::TimeoutSeconds, Kind::Int),
    (F::PeriodSeconds, Kind::Int),
    (F::SuccessThreshold, Kind::Int),
    (F::FailureThreshold, Kind::Int),
    (F::TerminationGracePeriodSeconds, Kind::Int),
];

/// How many of [`PROBE_FIELDS`] are actions (all a hook has).
const ACTIONS: usize = 5;

/// A probe or hook: exactly one action; a probe's timings when `timings` is given.
struct Handler<'t> {
    action: &'t mut Option<Action>,
    path: FieldPath,
    timings: Option<&'t mut [Option<i64>; 6]>,
}

impl<'a, R: Events<'a>> Object<'a, R> for Handler<'_> {
    fn fields(&self) -> &'static [(F, Kind)] {
        match self.timings {
            Some(_) => PROBE_FIELDS,
            None => PROBE_FIELDS.split_at(ACTIONS).0,
        }
    }
    fn set(&mut self, f: F, v: Value) {
        let i = match f {
            F::InitialDelaySeconds => 0,
            F::TimeoutSeconds => 1,
            F::PeriodSeconds => 2,
            F::SuccessThreshold => 3,
            F::FailureThreshold => 4,
            _ => 5,
        };
        if let Some(t) = self.timings.as_deref_mut() {
            t[i] = v.int();
        }
    }
    fn nested(
        &mut self,
        f: F,
        d: &mut D<'a, '_, R>,
        pool: &mut Pool,
        path: FieldPath,
        key: &Key<'a>,
    ) -> Result<()> {
        action(f, d, pool, path, key.mark, self.path, self.action)
    }
}

/// The fields of every action, with the required one first.
struct ActionObject {
    path: Option<Str>,
    port: Option<IntOrStr>,
    host: Option<Str>,
    scheme: Option<Scheme>,
    service: Option<Str>,
    headers: Vec<KeyValue, MAX_SMALL_LIST>,
    command: Vec<Str, MAX_SMALL_LIST>,
    /// Which action: its field.
    of: F,
}

impl<'a, R: Events<'a>> Object<'a, R> for ActionObject {
    fn fields(&self) -> &'static [(F, Kind)] {
        match self.of {
            F::Exec => &[(F::Command, Kind::Nested)],
            F::HttpGet => &[
                (F::Path, Kind::Str),
                (F::Port, Kind::IntOrStr),
                (F::Host, Kind::Str),
                (F::Scheme, Kind::Enum(Scheme::NAMES)),
                (F::HttpHeaders, Kind::Nested),
            ],
            F::TcpSocket => &[(F::Port, Kind::IntOrStr), (F::Host, Kind::Str)],
            F::Grpc => &[(F::Port, Kind::Int), (F::Service, Kind::Str)],
            _ => &[(F::Seconds, Kind::Int)],
        }
    }
    fn set(&mut self, f: F, v: Value) {
        match f {
            F::Path => self.path = v.str(),
            F::Port | F::Seconds => {
                self.port = match v {
                    Value::Int(i) => i.map(IntOrStr::Int),
                    v => v.int_or_str(),
                }
            }
            F::Host => self.host = v.str(),
            F::Scheme => self.scheme = v.pick(Scheme::ALL),
            _ => self.service = v.str(),
        }
    }
    fn nested(
        &mut self,
        f: F,
        d: &mut D<'a, '_, R>,
        pool: &mut Pool,
        path: FieldPath,
        _key: &Key<'a>,
    ) -> Result<()> {
        if f == F::Command {
            return d.strings(pool, path, &mut self.command, Limit::SmallList);
        }
        let list = &mut self.headers;
        objects(d, pool, path, list, Limit::SmallList, KeyValue::default)
    }
}

// An `httpHeaders` entry.
object! {
    KeyValue { Name: Kind::Str => key = text, Value: Kind::Str => value = text }
}

/// The action under key `of`, at `path` (`mark`: the key's), into `out`: the handler's
/// one action (at `handler`), so a second one is an error.
#[inline(never)]
fn action<'a, R: Events<'a>>(
    of: F,
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
    handler: FieldPath,
    out: &mut Option<Action>,
) -> Result<()> {
    let mut a = ActionObject {
        path: None,
        port: None,
        host: None,
        scheme: None,
        service: None,
        headers: Vec::new(),
        command: Vec::new(),
        of,
    };
    object(d, pool, path, &mut a)?;
    // Every action but exec requires its first field: `port`, or `seconds` for sleep.
    let port = match a.port {
        Some(port) => port,
        None if of == F::Exec => IntOrStr::Int(0),
        None => {
            let f = if of == F::Sleep { F::Seconds } else { F::Port };
            return Err(required(path.field(f), mark));
        }
    };
    if out.is_some() {
        return Err(Error::new(
            ErrorKind::Invalid(Invalid::ActionCount),
            handler,
            mark,
        ));
    }
    let int = match port {
        IntOrStr::Int(i) => i,
        IntOrStr::Str(_) => 0,
    };
    *out = Some(match of {
        F::Exec => Action::Exec(a.command),
        F::HttpGet => Action::HttpGet {
            path: a.path,
            port,
            host: a.host,
            scheme: a.scheme,
            headers: a.headers,
        },
        F::TcpSocket => Action::TcpSocket { port, host: a.host },
        F::Grpc => Action::Grpc {
            port: int,
            service: a.service,
        },
        _ => Action::Sleep { seconds: int },
    });
    Ok(())
}

/// A probe or hook action at `path` (`mark`: its key's) into `out`; a probe's timings go
/// to `timings`.
fn handler<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
    timings: Option<&mut [Option<i64>; 6]>,
    out: &mut Option<Action>,
) -> Result<()> {
    object(
        d,
        pool,
        path,
        &mut Handler {
            action: &mut *out,
            path,
            timings,
        },
    )?;
    if out.is_none() {
        return Err(Error::new(
            ErrorKind::Invalid(Invalid::ActionCount),
            path,
            mark,
        ));
    }
    Ok(())
}

#[inline(never)]
fn probe<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
    out: &mut Option<Probe>,
) -> Result<()> {
    let mut t = [None; 6];
    let mut action = None;
    handler(d, pool, path, mark, Some(&mut t), &mut action)?;
    finish_probe(action, &t, path, mark, out)
}

/// A probe from its action and timings (out of line: [`probe`]'s frame is on the stack
/// while the probe is read, this probe-sized temporary need not be).
#[inline(never)]
fn finish_probe(
    action: Option<Action>,
    t: &[Option<i64>; 6],
    path: FieldPath,
    mark: Mark,
    out: &mut Option<Probe>,
) -> Result<()> {
    let action = match action {
        Some(a) if !matches!(a, Action::Sleep { .. }) => a,
        _ => {
            return Err(Error::new(
                ErrorKind::Invalid(Invalid::ActionCount),
                path,
                mark,
            ))
        }
    };
    *out = Some(Probe {
        action,
        initial_delay_seconds: t[0],
        timeout_seconds: t[1],
        period_seconds: t[2],
        success_threshold: t[3],
        failure_threshold: t[4],
        termination_grace_period_seconds: t[5],
    });
    Ok(())
}
