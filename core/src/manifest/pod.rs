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
#[cfg(not(feature = "small"))]
use super::path::Seg;
use super::path::{FieldPath, F};
use crate::config::{Limit, MAX_DOWNWARD_ITEMS, MAX_LABELS, MAX_SMALL_LIST};
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
    fn other(
        &mut self,
        _d: &mut D<'a, '_, R>,
        _pool: &mut Pool,
        _key: &Key<'a>,
        _path: FieldPath,
    ) -> Result<bool> {
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
        $( other($os:ident, $od:ident, $opool:ident, $okey:ident, $opath:ident) $obody:block )?
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
                    $opool: &mut Pool,
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
            None => obj.other(d, pool, key, p),
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
    other(_s, d, _pool, _key, path) {
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
    other(_s, d, _pool, key, path) {
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
    fn other(
        &mut self,
        d: &mut D<'a, '_, R>,
        _pool: &mut Pool,
        key: &Key<'a>,
        path: FieldPath,
    ) -> Result<bool> {
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
        ImagePullSecrets: Kind::Nested,
        ResourceClaims: Kind::Nested,
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
            F::Volumes => d.seq(path, |d, i, p, mark| {
                let v = volume(d, pool, p, mark, i, &mut s.downward_items)?;
                s.volumes
                    .push(v)
                    .map_err(|_| Error::capacity(Limit::Volumes, p, mark))
            }),
            // Pull secrets are Secrets; claims are ResourceClaims (HasAPIObjectReference).
            F::ImagePullSecrets => api_ref_unless_empty_list(d, key, path, ApiRef::Secret),
            F::ResourceClaims => api_ref_unless_empty_list(d, key, path, ApiRef::ResourceClaim),
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
    other(s, d, pool, key, path) {
        match key.name() {
            "automountServiceAccountToken" => d.skip(path).map(|()| true),
            "dnsConfig" => dns_config(s, d, pool, key, path).map(|()| true),
            _ => Ok(false),
        }
    }
}

/// `dnsConfig` (read through `other`: its field names are not in the firmware's set).
#[cfg(not(feature = "small"))]
fn dns_config<'a, R: Events<'a>>(
    s: &mut PodSpec,
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    _key: &Key<'a>,
    path: FieldPath,
) -> Result<()> {
    let c = s.dns_config.get_or_insert_with(PodDnsConfig::default);
    object(d, pool, path.field(F::DnsConfig), c)
}

/// Firmware (`small`): a `dnsConfig` is refused at its key, not skipped (MAX_DNS_* are 0
/// there: its tasks resolve no names).
#[cfg(feature = "small")]
fn dns_config<'a, R: Events<'a>>(
    _s: &mut PodSpec,
    _d: &mut D<'a, '_, R>,
    _pool: &mut Pool,
    key: &Key<'a>,
    path: FieldPath,
) -> Result<()> {
    Err(Error::new(
        ErrorKind::Invalid(Invalid::NotInFirmware),
        path,
        key.mark,
    ))
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

/// An empty (or null) list is harmless; an item references API object `r`.
fn api_ref_unless_empty_list<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    key: &Key<'a>,
    path: FieldPath,
    r: ApiRef,
) -> Result<()> {
    d.seq(path, |d, _, _, _| d.api_ref(r, key, path).map(drop))
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

#[cfg(not(feature = "small"))]
object! {
    PodDnsConfig { Nameservers: Kind::Nested, Searches: Kind::Nested, Options: Kind::Nested }
    nested(s, f, d, pool, path, _key) {
        match f {
            F::Nameservers => d.strings(pool, path, &mut s.nameservers, Limit::DnsNameservers),
            F::Searches => d.strings(pool, path, &mut s.searches, Limit::DnsSearches),
            _ => objects(d, pool, path, &mut s.options, Limit::DnsOptions, DnsOption::default),
        }
    }
}

#[cfg(not(feature = "small"))]
object! {
    DnsOption { Name: Kind::Str => name = text, Value: Kind::Str => value = str }
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

/// One `volumes` entry: a name and exactly one of the sources keel supports. A volume that
/// names no source is an emptyDir (`SetDefaults_Volume`); one whose only source is one keel
/// does not know (nfs, iscsi...) is refused, as keel cannot mount it.
struct VolumeObject<'i> {
    name: Str,
    source: Option<VolumeSource>,
    /// A key keel does not know was written (warned about).
    unknown: bool,
    /// This volume's index, and where its downwardAPI files go.
    index: usize,
    items: &'i mut Vec<DownwardItem, MAX_DOWNWARD_ITEMS>,
}

#[cfg(not(feature = "small"))]
object! {
    VolumeObject<'_> {
        Name: Kind::Str => name = text,
        HostPath: Kind::Nested,
        EmptyDir: Kind::Nested,
        DownwardAPI: Kind::Nested,
        Projected: Kind::Nested,
        Image: Kind::Nested,
        Secret: Kind::Api(ApiRef::Secret),
        ConfigMap: Kind::Api(ApiRef::ConfigMap),
        PersistentVolumeClaim: Kind::Api(ApiRef::PersistentVolumeClaim),
        Csi: Kind::Api(ApiRef::CsiVolume),
    }
    nested(s, f, d, pool, path, key) {
        // validateVolumeSource: "may not specify more than 1 volume type".
        if s.source.is_some() {
            return Err(Error::new(
                ErrorKind::Invalid(Invalid::VolumeTypes),
                path,
                key.mark,
            ));
        }
        let mut src = SourceObject {
            of: f,
            path: Str::EMPTY,
            kind: None,
            medium: None,
            size_limit: None,
            default_mode: None,
            pull_policy: None,
            index: s.index,
            items: &mut *s.items,
        };
        object(d, pool, path, &mut src)?;
        s.source = Some(match f {
            F::EmptyDir => {
                let medium = src.medium.map(|m| pool.get(m));
                let huge = medium.and_then(|m| m.strip_prefix("HugePages"));
                // `HugePages-2Mi`: the size is the medium's text after the dash.
                let huge_pages = match (huge, src.medium) {
                    (Some(""), _) => Some(Str::EMPTY),
                    (Some(size), Some(m)) if size.len() > 1 && size.starts_with('-') => {
                        Some(m.suffix("HugePages-".len()))
                    }
                    (Some(_), _) => return Err(unknown_medium(path, key.mark)),
                    (None, _) => None,
                };
                let memory = medium == Some("Memory");
                if huge_pages.is_none() && !matches!(medium, None | Some("" | "Memory")) {
                    return Err(unknown_medium(path, key.mark));
                }
                VolumeSource::EmptyDir {
                    memory,
                    size_limit: src.size_limit,
                    huge_pages,
                }
            }
            F::HostPath => VolumeSource::HostPath {
                path: src.path,
                kind: src.kind,
            },
            F::Image => VolumeSource::Image {
                reference: src.path,
                pull_policy: src.pull_policy,
            },
            _ => VolumeSource::DownwardApi {
                projected: f == F::Projected,
                default_mode: src.default_mode,
            },
        });
        Ok(())
    }
    other(s, _d, _pool, _key, _path) {
        s.unknown = true;
        Ok(false)
    }
}

// Firmware (`small`): hostPath and emptyDir only; its tasks cannot use the others, which are
// unknown fields there (a volume with only those is refused as unsupported).
#[cfg(feature = "small")]
object! {
    VolumeObject<'_> {
        Name: Kind::Str => name = text,
        HostPath: Kind::Nested,
        EmptyDir: Kind::Nested,
        Secret: Kind::Api(ApiRef::Secret),
        ConfigMap: Kind::Api(ApiRef::ConfigMap),
        PersistentVolumeClaim: Kind::Api(ApiRef::PersistentVolumeClaim),
        Csi: Kind::Api(ApiRef::CsiVolume),
    }
    nested(s, f, d, pool, path, key) {
        // validateVolumeSource: "may not specify more than 1 volume type".
        if s.source.is_some() {
            return Err(Error::new(
                ErrorKind::Invalid(Invalid::VolumeTypes),
                path,
                key.mark,
            ));
        }
        let mut src = SourceObject {
            of: f,
            path: Str::EMPTY,
            kind: None,
            medium: None,
            size_limit: None,
            default_mode: None,
            pull_policy: None,
            index: s.index,
            items: &mut *s.items,
        };
        object(d, pool, path, &mut src)?;
        s.source = Some(match f {
            F::EmptyDir => {
                let medium = src.medium.map(|m| pool.get(m));
                let huge = medium.and_then(|m| m.strip_prefix("HugePages"));
                // `HugePages-2Mi`: the size is the medium's text after the dash.
                let huge_pages = match (huge, src.medium) {
                    (Some(""), _) => Some(Str::EMPTY),
                    (Some(size), Some(m)) if size.len() > 1 && size.starts_with('-') => {
                        Some(m.suffix("HugePages-".len()))
                    }
                    (Some(_), _) => return Err(unknown_medium(path, key.mark)),
                    (None, _) => None,
                };
                let memory = medium == Some("Memory");
                if huge_pages.is_none() && !matches!(medium, None | Some("" | "Memory")) {
                    return Err(unknown_medium(path, key.mark));
                }
                VolumeSource::EmptyDir {
                    memory,
                    size_limit: src.size_limit,
                    huge_pages,
                }
            }
            _ => VolumeSource::HostPath {
                path: src.path,
                kind: src.kind,
            },
        });
        Ok(())
    }
    other(s, _d, _pool, _key, _path) {
        s.unknown = true;
        Ok(false)
    }
}

fn unknown_medium(path: FieldPath, mark: Mark) -> Error {
    Error::new(
        ErrorKind::Invalid(Invalid::UnknownValue),
        path.field(F::Medium),
        mark,
    )
}

/// The fields of a volume source `of`: hostPath, emptyDir, image, downwardAPI or projected.
struct SourceObject<'i> {
    of: F,
    /// hostPath `path`, image `reference`.
    path: Str,
    kind: Option<HostPathType>,
    medium: Option<Str>,
    size_limit: Option<Quantity>,
    default_mode: Option<i64>,
    pull_policy: Option<PullPolicy>,
    #[cfg_attr(feature = "small", allow(dead_code))]
    index: usize,
    #[cfg_attr(feature = "small", allow(dead_code))]
    items: &'i mut Vec<DownwardItem, MAX_DOWNWARD_ITEMS>,
}

impl<'a, R: Events<'a>> Object<'a, R> for SourceObject<'_> {
    fn fields(&self) -> &'static [(F, Kind)] {
        match self.of {
            F::EmptyDir => &[(F::Medium, Kind::Str), (F::SizeLimit, Kind::Quantity)],
            F::HostPath => &[
                (F::Path, Kind::Str),
                (F::Type, Kind::Enum(HostPathType::NAMES)),
            ],
            F::Image => &[
                (F::Reference, Kind::Str),
                (F::PullPolicy, Kind::Enum(PullPolicy::NAMES)),
            ],
            F::DownwardAPI => &[(F::Items, Kind::Nested), (F::DefaultMode, Kind::Int)],
            _ => &[(F::Sources, Kind::Nested), (F::DefaultMode, Kind::Int)],
        }
    }
    fn set(&mut self, f: F, v: Value) {
        match f {
            F::Path | F::Reference => self.path = v.text(),
            F::Type => self.kind = v.pick(HostPathType::ALL),
            F::Medium => self.medium = v.str(),
            F::SizeLimit => self.size_limit = v.quantity(),
            F::PullPolicy => self.pull_policy = v.pick(PullPolicy::ALL),
            _ => self.default_mode = v.int(),
        }
    }
    #[cfg(not(feature = "small"))]
    fn nested(
        &mut self,
        f: F,
        d: &mut D<'a, '_, R>,
        pool: &mut Pool,
        path: FieldPath,
        _key: &Key<'a>,
    ) -> Result<()> {
        if f == F::Items {
            return downward_items(d, pool, path, self.index, self.items);
        }
        // projected `sources`: downwardAPI ones are files; the others reference API objects.
        d.seq(path, |d, _, p, _| {
            object(
                d,
                pool,
                p,
                &mut ProjectionObject {
                    index: self.index,
                    items: &mut *self.items,
                },
            )
        })
    }
}

#[cfg(not(feature = "small"))]
/// One `projected.sources` entry.
struct ProjectionObject<'i> {
    index: usize,
    items: &'i mut Vec<DownwardItem, MAX_DOWNWARD_ITEMS>,
}

#[cfg(not(feature = "small"))]
object! {
    ProjectionObject<'_> {
        DownwardAPI: Kind::Nested,
        Secret: Kind::Api(ApiRef::Secret),
        ConfigMap: Kind::Api(ApiRef::ConfigMap),
    }
    nested(s, _f, d, pool, path, _key) {
        let mut inner = ProjectionItems {
            index: s.index,
            items: &mut *s.items,
        };
        object(d, pool, path, &mut inner)
    }
    other(_s, d, _pool, key, path) {
        // Service account tokens, trust bundles and pod certificates come from the API.
        match key.name() {
            "serviceAccountToken" | "clusterTrustBundle" | "podCertificate" => {
                d.api_ref(ApiRef::ProjectedVolume, key, path)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(not(feature = "small"))]
/// A projected `downwardAPI`: only its `items`.
struct ProjectionItems<'i> {
    index: usize,
    items: &'i mut Vec<DownwardItem, MAX_DOWNWARD_ITEMS>,
}

#[cfg(not(feature = "small"))]
object! {
    ProjectionItems<'_> { Items: Kind::Nested }
    nested(s, _f, d, pool, path, _key) {
        downward_items(d, pool, path, s.index, s.items)
    }
}

#[cfg(not(feature = "small"))]
/// The `items` of a downwardAPI volume `index`, appended to `out`.
fn downward_items<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    index: usize,
    out: &mut Vec<DownwardItem, MAX_DOWNWARD_ITEMS>,
) -> Result<()> {
    d.seq(path, |d, _, p, mark| {
        let mut item = DownwardItemObject {
            path: Str::EMPTY,
            mode: None,
            source: None,
            count: 0,
        };
        object(d, pool, p, &mut item)?;
        // validateDownwardAPIVolumeFile: exactly one of fieldRef and resourceFieldRef.
        let source = match (item.source, item.count) {
            (Some(source), 1) => source,
            _ => {
                return Err(Error::new(
                    ErrorKind::Invalid(Invalid::EnvSourceCount),
                    p,
                    mark,
                ))
            }
        };
        let volume = u16::try_from(index).map_err(|_| Error::capacity(Limit::Volumes, p, mark))?;
        out.push(DownwardItem {
            volume,
            path: item.path,
            source,
            mode: item.mode,
        })
        .map_err(|_| Error::capacity(Limit::DownwardItems, p, mark))
    })
}

#[cfg(not(feature = "small"))]
/// One downwardAPI file.
struct DownwardItemObject {
    path: Str,
    mode: Option<i64>,
    source: Option<EnvSource>,
    count: u8,
}

#[cfg(not(feature = "small"))]
object! {
    DownwardItemObject {
        Path: Kind::Str => path = text,
        Mode: Kind::Int => mode = int,
        FieldRef: Kind::Nested,
        ResourceFieldRef: Kind::Nested,
    }
    nested(s, f, d, pool, path, key) {
        s.count += 1;
        value_source(f, d, pool, path, key, true, &mut s.source)
    }
}

fn volume<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
    index: usize,
    items: &mut Vec<DownwardItem, MAX_DOWNWARD_ITEMS>,
) -> Result<Volume> {
    let mut v = VolumeObject {
        name: Str::EMPTY,
        source: None,
        unknown: false,
        index,
        items,
    };
    object(d, pool, path, &mut v)?;
    let source = match v.source {
        Some(source) => source,
        None if !v.unknown => VolumeSource::EmptyDir {
            memory: false,
            size_limit: None,
            huge_pages: None,
        },
        None => {
            return Err(Error::new(
                ErrorKind::Invalid(Invalid::UnsupportedVolume),
                path,
                mark,
            ))
        }
    };
    Ok(Volume {
        name: v.name,
        source,
    })
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
    other(_s, d, _pool, key, path) {
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
    nested(s, _f, d, pool, path, key) {
        let mut v = ValueFrom {
            out: &mut s.value_from,
            count: 0,
        };
        object(d, pool, path, &mut v)?;
        // validateEnvVarValueFrom: exactly one source.
        if v.count != 1 {
            return Err(Error::new(
                ErrorKind::Invalid(Invalid::EnvSourceCount),
                path,
                key.mark,
            ));
        }
        Ok(())
    }
}

/// An env `valueFrom`: the references a static pod can resolve itself, or API objects.
struct ValueFrom<'e> {
    out: &'e mut Option<EnvSource>,
    count: u8,
}

object! {
    ValueFrom<'_> {
        FieldRef: Kind::Nested,
        ResourceFieldRef: Kind::Nested,
        SecretKeyRef: Kind::Api(ApiRef::Secret),
        ConfigMapKeyRef: Kind::Api(ApiRef::ConfigMap),
    }
    nested(s, f, d, pool, path, key) {
        s.count += 1;
        value_source(f, d, pool, path, key, false, s.out)
    }
}

/// A `fieldRef` or `resourceFieldRef` (field `f`) at `path`, for an env var or (`volume`)
/// a downwardAPI file, into `out`.
#[inline(never)]
fn value_source<'a, R: Events<'a>>(
    f: F,
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    key: &Key<'a>,
    volume: bool,
    out: &mut Option<EnvSource>,
) -> Result<()> {
    if f == F::FieldRef {
        let mut r = FieldRefObject {
            path: None,
            mark: key.mark,
            version: None,
        };
        object(d, pool, path, &mut r)?;
        // validateObjectFieldSelector: apiVersion v1 (the default), a supported fieldPath.
        if let Some((v, m)) = r.version {
            if pool.get(v) != "v1" {
                let p = path.field(F::ApiVersion);
                return Err(Error::new(ErrorKind::Invalid(Invalid::ApiVersion), p, m));
            }
        }
        let fp = path.field(F::FieldPath);
        let Some(text) = r.path else {
            return Err(required(fp, key.mark));
        };
        *out = Some(field_ref(pool, text, volume).ok_or(Error::new(
            ErrorKind::Invalid(Invalid::FieldRefPath),
            fp,
            r.mark,
        ))?);
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
            *out = Some(EnvSource::Resource {
                container: r.container,
                resource,
                divisor: r.divisor,
            });
            Ok(())
        }
        None => Err(required(path.field(F::Resource), key.mark)),
    }
}

/// What a `fieldPath` names (`validFieldPathExpressionsEnv` and, for volumes, the
/// narrower `validVolumeDownwardAPIFieldPathExpressions`; both take
/// `metadata.labels['<key>']` and `metadata.annotations['<key>']` with a valid key).
fn field_ref(pool: &Pool, text: Str, volume: bool) -> Option<EnvSource> {
    let t = pool.get(text);
    #[cfg(not(feature = "small"))]
    let subscript = |prefix: &str| {
        let key = t
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(text.suffix(t.len() - key.len() - 2).prefix(key.len()))
    };
    // One label or annotation (firmware tasks have no use for them: not in `small`).
    #[cfg(not(feature = "small"))]
    if let Some(k) = subscript("metadata.labels") {
        return super::validate::is_qualified_name(pool.get(k)).then_some(EnvSource::Label(k));
    }
    #[cfg(not(feature = "small"))]
    if let Some(k) = subscript("metadata.annotations") {
        let ok = super::validate::is_annotation_key(pool.get(k));
        return ok.then_some(EnvSource::Annotation(k));
    }
    match (t, volume) {
        ("metadata.labels", true) => Some(EnvSource::Labels),
        ("metadata.annotations", true) => Some(EnvSource::Annotations),
        _ => {
            let f = FieldRef::parse(t)?;
            let in_volume = matches!(
                f,
                FieldRef::MetadataName | FieldRef::MetadataNamespace | FieldRef::MetadataUid
            );
            (!volume || in_volume).then_some(EnvSource::Field(f))
        }
    }
}

/// `fieldRef`: its `fieldPath` (and where), and `apiVersion`.
struct FieldRefObject {
    path: Option<Str>,
    mark: Mark,
    version: Option<(Str, Mark)>,
}

object! {
    FieldRefObject { FieldPath: Kind::Nested, ApiVersion: Kind::Nested }
    nested(s, f, d, pool, path, _key) {
        let (v, mark) = d.string_at(pool, path)?;
        if f == F::FieldPath {
            s.path = v;
            s.mark = mark;
        } else {
            s.version = v.map(|v| (v, mark));
        }
        Ok(())
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
    Resources {
        Requests: Kind::Nested,
        Limits: Kind::Nested,
        Claims: Kind::Nested,
    }
    nested(s, f, d, pool, path, key) {
        let list = match f {
            F::Requests => &mut s.requests,
            F::Limits => &mut s.limits,
            _ => return api_ref_unless_empty_list(d, key, path, ApiRef::ResourceClaim),
        };
        object(d, pool, path, list)
    }
}

#[cfg(not(feature = "small"))]
object! {
    ResourceList {
        Cpu: Kind::Quantity => cpu = quantity,
        Memory: Kind::Quantity => memory = quantity,
        EphemeralStorage: Kind::Quantity => ephemeral_storage = quantity,
    }
    // Any other resource (hugepages, extended resources) is kept with its name; validation
    // judges the name as the API server does.
    other(s, d, pool, key, path) {
        let p = path.push(Seg::Entry(s.other.len() as u16));
        let name = d.key_text(pool, key, p)?;
        let quantity = d
            .quantity(pool, p)?
            .ok_or(Error::new(ErrorKind::Required, p, key.mark))?;
        s.other
            .push(ResourceEntry { name, quantity })
            .map_err(|_| Error::capacity(Limit::Resources, p, key.mark))?;
        Ok(true)
    }
}

// Firmware (`small`) has no hugepages or extended resources to give (MAX_RESOURCES 0):
// other resource names are unknown fields there.
#[cfg(feature = "small")]
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
