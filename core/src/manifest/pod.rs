//! The Pod's shape, field by field.
//!
//! This module deals with mapping Kubernetes field names onto the [`Pod`] model, using the
//! typed readers of [`super::decode`]. Each function reads one object; unknown keys return
//! `false` (warned about and skipped by the decoder); keys naming API objects are rejected.

use super::decode::{Decoder, Key};
use super::error::{ApiRef, Error, ErrorKind, Invalid};
use super::event::{Events, Mark};
use super::model::*;
use super::path::{FieldPath, F};
use crate::config::{Limit, MAX_ENV, MAX_MOUNTS, MAX_PORTS};
use heapless::Vec;

type Result<T> = core::result::Result<T, Error>;
type D<'a, 'w, R> = Decoder<'a, 'w, R>;

fn cap(l: Limit, path: FieldPath, mark: Mark) -> Error {
    Error::new(ErrorKind::Capacity(l), path, mark)
}

/// Fields keel knows and ignores on purpose without a warning.
fn silently_ignored(key: &str) -> bool {
    matches!(key, "creationTimestamp" | "status")
}

/// A string and where it was written.
pub(crate) type Located = (Str, Mark);

/// First pass: `apiVersion` and `kind` only, so that a Deployment is named as such
/// before its spec is judged as a pod spec.
pub(crate) fn kind_and_version<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
) -> Result<(Option<Located>, Option<Located>)> {
    let mut kind = None;
    let mut version = None;
    d.map(FieldPath::ROOT, |d, key, p| {
        match key.name() {
            "kind" => kind = d.string(pool, p.field(F::Kind))?.map(|s| (s, key.mark)),
            "apiVersion" => {
                version = d
                    .string(pool, p.field(F::ApiVersion))?
                    .map(|s| (s, key.mark))
            }
            _ => d.skip(p)?,
        }
        Ok(true)
    })?;
    Ok((kind, version))
}

/// The whole Pod, in one pass; returns where `kind` and `apiVersion` were written (the
/// caller checks them).
pub(crate) fn pod<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pod: &mut Pod,
) -> Result<(Option<Located>, Option<Located>)> {
    let mut kind = None;
    let mut version = None;
    let Pod {
        name,
        namespace,
        uid,
        labels,
        annotations,
        spec,
        pool,
    } = pod;
    d.map(FieldPath::ROOT, |d, key, p| {
        match key.name() {
            "kind" => kind = d.string(pool, p.field(F::Kind))?.map(|s| (s, key.mark)),
            "apiVersion" => {
                version = d
                    .string(pool, p.field(F::ApiVersion))?
                    .map(|s| (s, key.mark))
            }
            "metadata" => {
                let p = p.field(F::Metadata);
                d.map(p, |d, key, p| {
                    match key.name() {
                        "name" => *name = d.str_or_empty(pool, p.field(F::Name))?,
                        "namespace" => *namespace = d.string(pool, p.field(F::Namespace))?,
                        "uid" => *uid = d.string(pool, p.field(F::Uid))?,
                        "labels" => d.string_map(pool, p.field(F::Labels), labels)?,
                        "annotations" => {
                            d.string_map(pool, p.field(F::Annotations), annotations)?
                        }
                        k if silently_ignored(k) => d.skip(p)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            "spec" => pod_spec(d, pool, p.field(F::Spec), spec)?,
            k if silently_ignored(k) => d.skip(p)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    d.finish()?;
    Ok((kind, version))
}

fn pod_spec<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    spec: &mut PodSpec,
) -> Result<()> {
    d.map(path, |d, key, p| {
        match key.name() {
            "containers" => {
                let p = p.field(F::Containers);
                d.seq(p, |d, _, p, mark| {
                    // Decode in place: no container-sized temporary to copy.
                    spec.containers
                        .push(Container::default())
                        .map_err(|_| cap(Limit::Containers, p, mark))?;
                    let n = spec.containers.len();
                    container(d, pool, p, &mut spec.containers[n - 1])
                })?;
            }
            "initContainers" => {
                let p = p.field(F::InitContainers);
                d.seq(p, |d, _, p, mark| {
                    // Decode in place: no container-sized temporary to copy.
                    spec.init_containers
                        .push(Container::default())
                        .map_err(|_| cap(Limit::InitContainers, p, mark))?;
                    let n = spec.init_containers.len();
                    container(d, pool, p, &mut spec.init_containers[n - 1])
                })?;
            }
            "volumes" => {
                let p = p.field(F::Volumes);
                d.seq(p, |d, _, p, mark| {
                    let v = volume(d, pool, p, mark)?;
                    spec.volumes
                        .push(v)
                        .map_err(|_| cap(Limit::Volumes, p, mark))
                })?;
            }
            "restartPolicy" => {
                spec.restart_policy = d.enumeration(p.field(F::RestartPolicy), |s| match s {
                    "Always" => Some(RestartPolicy::Always),
                    "OnFailure" => Some(RestartPolicy::OnFailure),
                    "Never" => Some(RestartPolicy::Never),
                    _ => None,
                })?
            }
            "terminationGracePeriodSeconds" => {
                spec.termination_grace_period_seconds =
                    d.int(p.field(F::TerminationGracePeriodSeconds))?
            }
            "hostNetwork" => {
                spec.host_network = d.boolean(p.field(F::HostNetwork))?.unwrap_or(false)
            }
            "hostPID" => spec.host_pid = d.boolean(p.field(F::HostPID))?.unwrap_or(false),
            "hostIPC" => spec.host_ipc = d.boolean(p.field(F::HostIPC))?.unwrap_or(false),
            "dnsPolicy" => {
                spec.dns_policy = d.enumeration(p.field(F::DnsPolicy), |s| match s {
                    "ClusterFirst" => Some(DnsPolicy::ClusterFirst),
                    "ClusterFirstWithHostNet" => Some(DnsPolicy::ClusterFirstWithHostNet),
                    "Default" => Some(DnsPolicy::Default),
                    "None" => Some(DnsPolicy::None),
                    _ => None,
                })?
            }
            "hostname" => spec.hostname = d.string(pool, p.field(F::Hostname))?,
            "nodeName" => spec.node_name = d.string(pool, p.field(F::NodeName))?,
            "priorityClassName" => {
                spec.priority_class_name = d.string(pool, p.field(F::PriorityClassName))?
            }
            "priority" => spec.priority = d.int(p.field(F::Priority))?,
            "hostAliases" => {
                let p = p.field(F::HostAliases);
                d.seq(p, |d, _, p, mark| {
                    let mut a = HostAlias::default();
                    d.map(p, |d, key, p| {
                        match key.name() {
                            "ip" => a.ip = d.str_or_empty(pool, p.field(F::Ip))?,
                            "hostnames" => d.strings(
                                pool,
                                p.field(F::Hostnames),
                                &mut a.hostnames,
                                Limit::HostAliases,
                            )?,
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    spec.host_aliases
                        .push(a)
                        .map_err(|_| cap(Limit::HostAliases, p, mark))
                })?;
            }
            "securityContext" => {
                let sc = &mut spec.security_context;
                d.map(p.field(F::SecurityContext), |d, key, p| {
                    match key.name() {
                        "runAsUser" => sc.run_as_user = d.int(p.field(F::RunAsUser))?,
                        "runAsGroup" => sc.run_as_group = d.int(p.field(F::RunAsGroup))?,
                        "runAsNonRoot" => {
                            sc.run_as_non_root = d.boolean(p.field(F::RunAsNonRoot))?
                        }
                        "fsGroup" => sc.fs_group = d.int(p.field(F::FsGroup))?,
                        "supplementalGroups" => {
                            let p = p.field(F::SupplementalGroups);
                            d.seq(p, |d, _, p, mark| {
                                let g = d.int(p)?.unwrap_or(0);
                                sc.supplemental_groups
                                    .push(g)
                                    .map_err(|_| cap(Limit::SmallList, p, mark))
                            })?
                        }
                        "seccompProfile" => {
                            sc.seccomp = Some(seccomp(d, pool, p.field(F::SeccompProfile))?)
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            "tolerations" => {
                let p = p.field(F::Tolerations);
                d.seq(p, |d, _, p, mark| {
                    let mut t = Toleration::default();
                    d.map(p, |d, key, p| {
                        match key.name() {
                            "key" => t.key = d.string(pool, p.field(F::Key))?,
                            "operator" => t.operator = d.string(pool, p.field(F::Operator))?,
                            "value" => t.value = d.string(pool, p.field(F::Value))?,
                            "effect" => t.effect = d.string(pool, p.field(F::Effect))?,
                            "tolerationSeconds" => {
                                t.toleration_seconds = d.int(p.field(F::TolerationSeconds))?
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    spec.tolerations
                        .push(t)
                        .map_err(|_| cap(Limit::Tolerations, p, mark))
                })?;
            }
            "serviceAccountName" => {
                return api_ref_unless_empty(d, pool, key, p.field(F::ServiceAccountName))
            }
            "serviceAccount" => {
                return api_ref_unless_empty(d, pool, key, p.field(F::ServiceAccount))
            }
            "automountServiceAccountToken" => d.skip(p)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `serviceAccountName: ""` (or null) is harmless; any other value references an API object.
fn api_ref_unless_empty<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    key: &Key<'a>,
    path: FieldPath,
) -> Result<bool> {
    let start = pool.start();
    let v = d.string(pool, path)?;
    pool.truncate(start);
    match v {
        Some(s) if !s.is_empty() => d.api_ref(ApiRef::ServiceAccount, key, path),
        _ => Ok(true),
    }
}

fn seccomp<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
) -> Result<Seccomp> {
    let mut out = Seccomp {
        kind: SeccompType::RuntimeDefault,
        localhost_profile: None,
    };
    let mut seen_type = None;
    d.map(path, |d, key, p| {
        match key.name() {
            "type" => {
                seen_type = Some(key.mark);
                if let Some(k) = d.enumeration(p.field(F::Type), |s| match s {
                    "RuntimeDefault" => Some(SeccompType::RuntimeDefault),
                    "Unconfined" => Some(SeccompType::Unconfined),
                    "Localhost" => Some(SeccompType::Localhost),
                    _ => None,
                })? {
                    out.kind = k;
                }
            }
            "localhostProfile" => {
                out.localhost_profile = d.string(pool, p.field(F::LocalhostProfile))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if seen_type.is_none() {
        return Err(Error::new(
            ErrorKind::Required,
            path.field(F::Type),
            Mark::default(),
        ));
    }
    Ok(out)
}

fn volume<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
) -> Result<Volume> {
    let mut name = Str::EMPTY;
    let mut source = None;
    d.map(path, |d, key, p| {
        match key.name() {
            "name" => name = d.str_or_empty(pool, p.field(F::Name))?,
            "hostPath" => {
                let (mut hp, mut kind) = (Str::EMPTY, None);
                d.map(p.field(F::HostPath), |d, key, p| {
                    match key.name() {
                        "path" => hp = d.str_or_empty(pool, p.field(F::Path))?,
                        "type" => {
                            kind = d.enumeration(p.field(F::Type), |s| {
                                Some(match s {
                                    "" => HostPathType::Unset,
                                    "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
                                    "Directory" => HostPathType::Directory,
                                    "FileOrCreate" => HostPathType::FileOrCreate,
                                    "File" => HostPathType::File,
                                    "Socket" => HostPathType::Socket,
                                    "CharDevice" => HostPathType::CharDevice,
                                    "BlockDevice" => HostPathType::BlockDevice,
                                    _ => return None,
                                })
                            })?
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                source = Some(VolumeSource::HostPath { path: hp, kind });
            }
            "emptyDir" => {
                let (mut memory, mut size_limit) = (false, None);
                d.map(p.field(F::EmptyDir), |d, key, p| {
                    match key.name() {
                        "medium" => {
                            memory = d
                                .enumeration(p.field(F::Medium), |s| match s {
                                    "" => Some(false),
                                    "Memory" => Some(true),
                                    _ => None,
                                })?
                                .unwrap_or(false)
                        }
                        "sizeLimit" => size_limit = d.quantity(pool, p.field(F::SizeLimit))?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                source = Some(VolumeSource::EmptyDir { memory, size_limit });
            }
            "secret" => return d.api_ref(ApiRef::Secret, key, p.field(F::Secret)),
            "configMap" => return d.api_ref(ApiRef::ConfigMap, key, p.field(F::ConfigMap)),
            "persistentVolumeClaim" => {
                return d.api_ref(
                    ApiRef::PersistentVolumeClaim,
                    key,
                    p.field(F::PersistentVolumeClaim),
                )
            }
            "projected" => return d.api_ref(ApiRef::ProjectedVolume, key, p.field(F::Projected)),
            "csi" => return d.api_ref(ApiRef::CsiVolume, key, p.field(F::Csi)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    match source {
        Some(source) => Ok(Volume { name, source }),
        None => Err(Error::new(
            ErrorKind::Invalid(Invalid::UnsupportedVolume),
            path,
            mark,
        )),
    }
}

fn container<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    c: &mut Container,
) -> Result<()> {
    d.map(path, |d, key, p| {
        match key.name() {
            "name" => c.name = d.str_or_empty(pool, p.field(F::Name))?,
            "image" => c.image = d.str_or_empty(pool, p.field(F::Image))?,
            "imagePullPolicy" => {
                c.image_pull_policy = d.enumeration(p.field(F::ImagePullPolicy), |s| match s {
                    "Always" => Some(PullPolicy::Always),
                    "IfNotPresent" => Some(PullPolicy::IfNotPresent),
                    "Never" => Some(PullPolicy::Never),
                    _ => None,
                })?
            }
            "command" => d.strings(pool, p.field(F::Command), &mut c.command, Limit::Args)?,
            "args" => d.strings(pool, p.field(F::Args), &mut c.args, Limit::Args)?,
            "workingDir" => c.working_dir = d.string(pool, p.field(F::WorkingDir))?,
            // The larger arms are out-of-line functions: this handler's frame stays on the
            // stack under every nested field, so it must not hold their temporaries.
            "env" => container_env(d, pool, p.field(F::Env), &mut c.env)?,
            "envFrom" => container_env_from(d, p.field(F::EnvFrom))?,
            "ports" => container_ports(d, pool, p.field(F::Ports), &mut c.ports)?,
            "resources" => container_resources(d, pool, p.field(F::Resources), &mut c.resources)?,
            "volumeMounts" => {
                container_mounts(d, pool, p.field(F::VolumeMounts), &mut c.volume_mounts)?
            }
            "livenessProbe" => set_probe(
                d,
                pool,
                p.field(F::LivenessProbe),
                key.mark,
                &mut c.liveness_probe,
            )?,
            "readinessProbe" => set_probe(
                d,
                pool,
                p.field(F::ReadinessProbe),
                key.mark,
                &mut c.readiness_probe,
            )?,
            "startupProbe" => set_probe(
                d,
                pool,
                p.field(F::StartupProbe),
                key.mark,
                &mut c.startup_probe,
            )?,
            "lifecycle" => lifecycle(d, pool, p.field(F::Lifecycle), &mut c.lifecycle)?,
            "securityContext" => set_security_context(
                d,
                pool,
                p.field(F::SecurityContext),
                &mut c.security_context,
            )?,
            "stdin" => c.stdin = d.boolean(p.field(F::Stdin))?.unwrap_or(false),
            "tty" => c.tty = d.boolean(p.field(F::Tty))?.unwrap_or(false),
            "terminationMessagePath" => {
                c.termination_message_path = d.string(pool, p.field(F::TerminationMessagePath))?
            }
            "terminationMessagePolicy" => {
                c.termination_message_policy =
                    d.enumeration(p.field(F::TerminationMessagePolicy), |s| match s {
                        "File" => Some(TerminationMessagePolicy::File),
                        "FallbackToLogsOnError" => {
                            Some(TerminationMessagePolicy::FallbackToLogsOnError)
                        }
                        _ => None,
                    })?
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

#[inline(never)]
fn container_env<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    env: &mut Vec<EnvVar, MAX_ENV>,
) -> Result<()> {
    d.seq(path, |d, _, p, mark| {
        let e = env_var(d, pool, p)?;
        env.push(e).map_err(|_| cap(Limit::Env, p, mark))
    })
}

#[inline(never)]
fn container_env_from<'a, R: Events<'a>>(d: &mut D<'a, '_, R>, path: FieldPath) -> Result<()> {
    d.seq(path, |d, _, p, _| {
        d.map(p, |d, key, p| match key.name() {
            "configMapRef" => d.api_ref(ApiRef::ConfigMap, key, p),
            "secretRef" => d.api_ref(ApiRef::Secret, key, p),
            _ => Ok(false),
        })
    })
}

#[inline(never)]
fn container_ports<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    ports: &mut Vec<ContainerPort, MAX_PORTS>,
) -> Result<()> {
    d.seq(path, |d, _, p, mark| {
        let port = port(d, pool, p)?;
        ports.push(port).map_err(|_| cap(Limit::Ports, p, mark))
    })
}

#[inline(never)]
fn container_resources<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    r: &mut Resources,
) -> Result<()> {
    d.map(path, |d, key, p| {
        match key.name() {
            "requests" => resource_list(d, pool, p.field(F::Requests), &mut r.requests)?,
            "limits" => resource_list(d, pool, p.field(F::Limits), &mut r.limits)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

#[inline(never)]
fn container_mounts<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mounts: &mut Vec<VolumeMount, MAX_MOUNTS>,
) -> Result<()> {
    d.seq(path, |d, _, p, mark| {
        let m = mount(d, pool, p)?;
        mounts.push(m).map_err(|_| cap(Limit::Mounts, p, mark))
    })
}

#[inline(never)]
fn set_probe<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
    out: &mut Option<Probe>,
) -> Result<()> {
    *out = probe(d, pool, path, mark)?;
    Ok(())
}

#[inline(never)]
fn lifecycle<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    l: &mut Lifecycle,
) -> Result<()> {
    d.map(path, |d, key, p| {
        match key.name() {
            "postStart" => {
                let p = p.field(F::PostStart);
                l.post_start = Some(handler(d, pool, p, key.mark, &mut |_, _, _| Ok(false))?)
            }
            "preStop" => {
                let p = p.field(F::PreStop);
                l.pre_stop = Some(handler(d, pool, p, key.mark, &mut |_, _, _| Ok(false))?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

#[inline(never)]
fn set_security_context<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    out: &mut Option<SecurityContext>,
) -> Result<()> {
    *out = Some(security_context(d, pool, path)?);
    Ok(())
}

fn env_var<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
) -> Result<EnvVar> {
    let mut e = EnvVar::default();
    d.map(path, |d, key, p| {
        match key.name() {
            "name" => e.name = d.str_or_empty(pool, p.field(F::Name))?,
            "value" => e.value = d.string(pool, p.field(F::Value))?,
            "valueFrom" => {
                let p = p.field(F::ValueFrom);
                d.map(p, |d, key, p| {
                    match key.name() {
                        "fieldRef" => {
                            let p = p.field(F::FieldRef);
                            d.map(p, |d, key, p| {
                                match key.name() {
                                    "fieldPath" => {
                                        let f = d.enumeration(p.field(F::FieldPath), |s| {
                                            Some(match s {
                                                "metadata.name" => FieldRef::MetadataName,
                                                "metadata.namespace" => FieldRef::MetadataNamespace,
                                                "metadata.uid" => FieldRef::MetadataUid,
                                                "spec.nodeName" => FieldRef::SpecNodeName,
                                                "spec.serviceAccountName" => {
                                                    FieldRef::SpecServiceAccountName
                                                }
                                                "status.podIP" => FieldRef::StatusPodIP,
                                                "status.podIPs" => FieldRef::StatusPodIPs,
                                                "status.hostIP" => FieldRef::StatusHostIP,
                                                "status.hostIPs" => FieldRef::StatusHostIPs,
                                                _ => return None,
                                            })
                                        });
                                        let f = f.map_err(|mut err| {
                                            if matches!(
                                                err.kind,
                                                ErrorKind::Invalid(Invalid::UnknownValue)
                                            ) {
                                                err.kind =
                                                    ErrorKind::Invalid(Invalid::FieldRefPath);
                                            }
                                            err
                                        })?;
                                        if let Some(f) = f {
                                            e.value_from = Some(EnvSource::Field(f));
                                        }
                                    }
                                    "apiVersion" => {
                                        d.skip(p)?;
                                    }
                                    _ => return Ok(false),
                                }
                                Ok(true)
                            })?;
                            if e.value_from.is_none() {
                                return Err(Error::new(
                                    ErrorKind::Required,
                                    p.field(F::FieldPath),
                                    key.mark,
                                ));
                            }
                        }
                        "resourceFieldRef" => {
                            let p = p.field(F::ResourceFieldRef);
                            let (mut container, mut resource, mut divisor) = (None, None, None);
                            d.map(p, |d, key, p| {
                                match key.name() {
                                    "containerName" => {
                                        container = d.string(pool, p.field(F::ContainerName))?
                                    }
                                    "resource" => {
                                        resource = d.enumeration(p.field(F::Resource), |s| {
                                            Some(match s {
                                                "limits.cpu" => ResourceName::LimitsCpu,
                                                "limits.memory" => ResourceName::LimitsMemory,
                                                "limits.ephemeral-storage" => {
                                                    ResourceName::LimitsEphemeralStorage
                                                }
                                                "requests.cpu" => ResourceName::RequestsCpu,
                                                "requests.memory" => ResourceName::RequestsMemory,
                                                "requests.ephemeral-storage" => {
                                                    ResourceName::RequestsEphemeralStorage
                                                }
                                                _ => return None,
                                            })
                                        })?
                                    }
                                    "divisor" => divisor = d.quantity(pool, p.field(F::Divisor))?,
                                    _ => return Ok(false),
                                }
                                Ok(true)
                            })?;
                            match resource {
                                Some(resource) => {
                                    e.value_from = Some(EnvSource::Resource {
                                        container,
                                        resource,
                                        divisor,
                                    })
                                }
                                None => {
                                    return Err(Error::new(
                                        ErrorKind::Required,
                                        p.field(F::Resource),
                                        key.mark,
                                    ))
                                }
                            }
                        }
                        "secretKeyRef" => {
                            return d.api_ref(ApiRef::Secret, key, p.field(F::SecretKeyRef))
                        }
                        "configMapKeyRef" => {
                            return d.api_ref(ApiRef::ConfigMap, key, p.field(F::ConfigMapKeyRef))
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(e)
}

fn port<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
) -> Result<ContainerPort> {
    let mut out = ContainerPort {
        name: None,
        container_port: 0,
        host_port: None,
        protocol: None,
        host_ip: None,
    };
    let mut seen = false;
    d.map(path, |d, key, p| {
        match key.name() {
            "name" => out.name = d.string(pool, p.field(F::Name))?,
            "containerPort" => {
                seen = true;
                out.container_port = d.int(p.field(F::ContainerPort))?.unwrap_or(0)
            }
            "hostPort" => out.host_port = d.int(p.field(F::HostPort))?,
            "protocol" => {
                out.protocol = d.enumeration(p.field(F::Protocol), |s| match s {
                    "TCP" => Some(Protocol::TCP),
                    "UDP" => Some(Protocol::UDP),
                    "SCTP" => Some(Protocol::SCTP),
                    _ => None,
                })?
            }
            "hostIP" => out.host_ip = d.string(pool, p.field(F::HostIP))?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let _ = seen;
    Ok(out)
}

fn resource_list<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    out: &mut ResourceList,
) -> Result<()> {
    d.map(path, |d, key, p| {
        match key.name() {
            "cpu" => out.cpu = d.quantity(pool, p.field(F::Cpu))?,
            "memory" => out.memory = d.quantity(pool, p.field(F::Memory))?,
            "ephemeral-storage" => {
                out.ephemeral_storage = d.quantity(pool, p.field(F::EphemeralStorage))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn mount<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
) -> Result<VolumeMount> {
    let mut m = VolumeMount::default();
    d.map(path, |d, key, p| {
        match key.name() {
            "name" => m.name = d.str_or_empty(pool, p.field(F::Name))?,
            "mountPath" => m.mount_path = d.str_or_empty(pool, p.field(F::MountPath))?,
            "subPath" => m.sub_path = d.string(pool, p.field(F::SubPath))?,
            "readOnly" => m.read_only = d.boolean(p.field(F::ReadOnly))?.unwrap_or(false),
            "mountPropagation" => {
                m.propagation = d.enumeration(p.field(F::MountPropagation), |s| match s {
                    "None" => Some(MountPropagation::None),
                    "HostToContainer" => Some(MountPropagation::HostToContainer),
                    "Bidirectional" => Some(MountPropagation::Bidirectional),
                    _ => None,
                })?
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(m)
}

/// Keys of the object around a handler (a probe's timings), tried after the actions'.
type Extra<'f, 'a, 'w, R> = dyn FnMut(&mut D<'a, 'w, R>, &Key<'a>, FieldPath) -> Result<bool> + 'f;

/// A probe or hook action. `extra` handles keys that belong to the probe around it.
fn handler<'a, 'w, R: Events<'a>>(
    d: &mut D<'a, 'w, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
    extra: &mut Extra<'_, 'a, 'w, R>,
) -> Result<Action> {
    let mut action: Option<Action> = None;
    let mut count = 0;
    d.map(path, |d, key, p| {
        let a = match key.name() {
            "exec" => {
                let mut cmd = Vec::new();
                d.map(p.field(F::Exec), |d, key, p| {
                    match key.name() {
                        "command" => {
                            d.strings(pool, p.field(F::Command), &mut cmd, Limit::SmallList)?
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Action::Exec(cmd)
            }
            "httpGet" => {
                let (mut hpath, mut port, mut host, mut scheme) = (None, None, None, None);
                let mut headers = Vec::new();
                let p = p.field(F::HttpGet);
                d.map(p, |d, key, p| {
                    match key.name() {
                        "path" => hpath = d.string(pool, p.field(F::Path))?,
                        "port" => port = d.int_or_str(pool, p.field(F::Port))?,
                        "host" => host = d.string(pool, p.field(F::Host))?,
                        "scheme" => {
                            scheme = d.enumeration(p.field(F::Scheme), |s| match s {
                                "HTTP" => Some(Scheme::HTTP),
                                "HTTPS" => Some(Scheme::HTTPS),
                                _ => None,
                            })?
                        }
                        "httpHeaders" => {
                            let p = p.field(F::HttpHeaders);
                            d.seq(p, |d, _, p, mark| {
                                let mut kv = KeyValue::default();
                                d.map(p, |d, key, p| {
                                    match key.name() {
                                        "name" => {
                                            kv.key = d.str_or_empty(pool, p.field(F::Name))?
                                        }
                                        "value" => {
                                            kv.value = d.str_or_empty(pool, p.field(F::Value))?
                                        }
                                        _ => return Ok(false),
                                    }
                                    Ok(true)
                                })?;
                                headers.push(kv).map_err(|_| cap(Limit::SmallList, p, mark))
                            })?
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let port =
                    port.ok_or(Error::new(ErrorKind::Required, p.field(F::Port), key.mark))?;
                Action::HttpGet {
                    path: hpath,
                    port,
                    host,
                    scheme,
                    headers,
                }
            }
            "tcpSocket" => {
                let (mut port, mut host) = (None, None);
                let p = p.field(F::TcpSocket);
                d.map(p, |d, key, p| {
                    match key.name() {
                        "port" => port = d.int_or_str(pool, p.field(F::Port))?,
                        "host" => host = d.string(pool, p.field(F::Host))?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let port =
                    port.ok_or(Error::new(ErrorKind::Required, p.field(F::Port), key.mark))?;
                Action::TcpSocket { port, host }
            }
            "grpc" => {
                let (mut port, mut service) = (None, None);
                let p = p.field(F::Grpc);
                d.map(p, |d, key, p| {
                    match key.name() {
                        "port" => port = d.int(p.field(F::Port))?,
                        "service" => service = d.string(pool, p.field(F::Service))?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let port =
                    port.ok_or(Error::new(ErrorKind::Required, p.field(F::Port), key.mark))?;
                Action::Grpc { port, service }
            }
            "sleep" => {
                let mut seconds = None;
                let p = p.field(F::Sleep);
                d.map(p, |d, key, p| {
                    match key.name() {
                        "seconds" => seconds = d.int(p.field(F::Seconds))?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let seconds = seconds.ok_or(Error::new(
                    ErrorKind::Required,
                    p.field(F::Seconds),
                    key.mark,
                ))?;
                Action::Sleep { seconds }
            }
            _ => return extra(d, key, p),
        };
        count += 1;
        if count > 1 {
            return Err(Error::new(
                ErrorKind::Invalid(Invalid::ActionCount),
                path,
                key.mark,
            ));
        }
        action = Some(a);
        Ok(true)
    })?;
    action.ok_or(Error::new(
        ErrorKind::Invalid(Invalid::ActionCount),
        path,
        mark,
    ))
}

fn probe<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
    mark: Mark,
) -> Result<Option<Probe>> {
    let mut t = [None; 6];
    let action = handler(d, pool, path, mark, &mut |d, key, p| {
        let (i, f) = match key.name() {
            "initialDelaySeconds" => (0, F::InitialDelaySeconds),
            "timeoutSeconds" => (1, F::TimeoutSeconds),
            "periodSeconds" => (2, F::PeriodSeconds),
            "successThreshold" => (3, F::SuccessThreshold),
            "failureThreshold" => (4, F::FailureThreshold),
            "terminationGracePeriodSeconds" => (5, F::TerminationGracePeriodSeconds),
            _ => return Ok(false),
        };
        t[i] = d.int(p.field(f))?;
        Ok(true)
    })?;
    if matches!(action, Action::Sleep { .. }) {
        return Err(Error::new(
            ErrorKind::Invalid(Invalid::ActionCount),
            path,
            mark,
        ));
    }
    Ok(Some(Probe {
        action,
        initial_delay_seconds: t[0],
        timeout_seconds: t[1],
        period_seconds: t[2],
        success_threshold: t[3],
        failure_threshold: t[4],
        termination_grace_period_seconds: t[5],
    }))
}

fn security_context<'a, R: Events<'a>>(
    d: &mut D<'a, '_, R>,
    pool: &mut Pool,
    path: FieldPath,
) -> Result<SecurityContext> {
    let mut sc = SecurityContext::default();
    d.map(path, |d, key, p| {
        match key.name() {
            "privileged" => sc.privileged = d.boolean(p.field(F::Privileged))?,
            "runAsUser" => sc.run_as_user = d.int(p.field(F::RunAsUser))?,
            "runAsGroup" => sc.run_as_group = d.int(p.field(F::RunAsGroup))?,
            "runAsNonRoot" => sc.run_as_non_root = d.boolean(p.field(F::RunAsNonRoot))?,
            "readOnlyRootFilesystem" => {
                sc.read_only_root_filesystem = d.boolean(p.field(F::ReadOnlyRootFilesystem))?
            }
            "allowPrivilegeEscalation" => {
                sc.allow_privilege_escalation = d.boolean(p.field(F::AllowPrivilegeEscalation))?
            }
            "capabilities" => {
                let (add, drop) = (&mut sc.cap_add, &mut sc.cap_drop);
                d.map(p.field(F::Capabilities), |d, key, p| {
                    match key.name() {
                        "add" => d.strings(pool, p.field(F::Add), add, Limit::SmallList)?,
                        "drop" => d.strings(pool, p.field(F::Drop), drop, Limit::SmallList)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            "seccompProfile" => sc.seccomp = Some(seccomp(d, pool, p.field(F::SeccompProfile))?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(sc)
}
