//! Capacities, in one place.
//!
//! This module deals with every fixed limit in keel-core. The core never allocates, so each
//! collection has a capacity chosen when the image is built. Running out of one is a typed
//! error naming the limit ([`Limit`]) and the field, never truncation and never a panic.
//!
//! Two sets exist: the Linux set (default) sized for real control-plane manifests, each
//! limit at least 4x what the largest of them needs (the corpus in
//! `host-tests/fixtures/control-plane`, checked by `host-tests/tests/control_plane.rs`;
//! at most 5 containers and 5 init containers, 43 flags, 29 env entries, 3 ports, 39
//! mounts, 16 volumes, 14.5 KiB of text, 16.6 KiB encoded), and the firmware set (feature
//! `small`)
//! for a Cortex-M3 with 64 KiB of RAM: 8 pod slots of 4 containers each (init containers
//! counted within) fit in 48 KiB with the reconciler's stack (hal-qemu/README.md, "Size").
//! Pod slots are not counted here: the caller passes their storage to the reconciler.

use serde::{Deserialize, Serialize};

macro_rules! limits {
    ($( $(#[$m:meta])* $name:ident = $linux:expr, $small:expr; )*) => {
        $(
            $(#[$m])*
            #[cfg(not(feature = "small"))]
            pub const $name: usize = $linux;
            $(#[$m])*
            #[cfg(feature = "small")]
            pub const $name: usize = $small;
        )*
    };
}

limits! {
    /// App containers per pod. Why 20: OpenShift's kube-apiserver and etcd pods have 5.
    MAX_CONTAINERS = 20, 4;
    /// Init containers per pod. Why 20: kops' etcd-manager copies the etcd versions it
    /// supports out of their images with init containers (5).
    MAX_INIT_CONTAINERS = 20, 2;
    /// Containers per pod, init and app together, that a pod slot holds. Firmware: 4, of
    /// which up to 2 may be init containers; a pod with more is refused when it is loaded
    /// (`Capacity(Containers)`), though the decoder takes 4 + 2.
    MAX_POD_CONTAINERS = 20 + 20, 4;
    /// Entries in one container's `command`, and separately in its `args`. Why 192: kops'
    /// kube-apiserver carries 43 flags.
    MAX_ARGS = 192, 4;
    /// `env` entries per container. Why 128: OpenShift's etcd container sets 29.
    MAX_ENV = 128, 4;
    /// `ports` per container. Why 16: OpenShift's etcd sets 3 (client, peer, metrics).
    MAX_PORTS = 16, 1;
    /// `volumeMounts` per container. Why 200: kops' etcd-manager with image volumes has 39
    /// (up to 50 as kops adds etcd versions).
    MAX_MOUNTS = 200, 1;
    /// `volumes` per pod. Why 200: kops' kube-apiserver has 16.
    MAX_VOLUMES = 200, 1;
    /// Resources other than cpu, memory and ephemeral-storage (`hugepages-<size>`,
    /// extended resources) in one `requests` or `limits`. Firmware has none to give.
    MAX_RESOURCES = 8, 0;
    /// Files of all downwardAPI volumes of a pod together. Firmware has no files to fill.
    MAX_DOWNWARD_ITEMS = 64, 0;
    /// Entries in `metadata.labels`, and separately in `metadata.annotations`.
    MAX_LABELS = 32, 4;
    /// `tolerations` per pod.
    MAX_TOLERATIONS = 16, 1;
    /// `hostAliases` per pod, and hostnames per alias.
    MAX_HOST_ALIASES = 8, 1;
    /// `dnsConfig.nameservers`: Kubernetes allows 3 (`MaxDNSNameservers`, the resolver's
    /// MAXNS). Firmware: none: its tasks resolve no names, and decoding `dnsConfig` did
    /// not fit the flash budget (6.5 KiB), so the firmware refuses it
    /// (`Invalid::NotInFirmware`).
    MAX_DNS_NAMESERVERS = 3, 0;
    /// `dnsConfig.searches`: Kubernetes allows 32 (`MaxDNSSearchPaths`). Firmware: none.
    MAX_DNS_SEARCHES = 32, 0;
    /// `dnsConfig.options`: Kubernetes sets no bound; 16 is four times the resolver's
    /// options in common use (ndots, timeout, attempts, edns0). Firmware: none.
    MAX_DNS_OPTIONS = 16, 0;
    /// Capabilities in one `add` or `drop` list, and exec-probe / exec-hook arguments.
    MAX_SMALL_LIST = 16, 2;
    /// Bytes of text (names, images, arguments, values...) one pod may hold in total. The
    /// decoded spec keeps every string in one pool of this size. Why 65 535: the largest
    /// control-plane pod in the corpus (OpenShift's etcd, with its shell scripts) holds
    /// 14.5 KiB, and string handles are 16-bit offsets, so this is also the most there can be.
    STRING_BYTES = 65_535, 640;
    /// Bytes of the compact (postcard) encoding of a validated spec kept in a pod slot. Why
    /// 640 in firmware: it keeps 8 slots within the 48 KiB budget; a 4-container pod with
    /// args and a probe each encodes in ~530 bytes (`cargo run -p keel-host-tests --example sizes --features
    /// keel-core/small`). A larger spec is a `SpecBytes` capacity error for that pod only.
    SPEC_BYTES = 96 * 1024, 640;
    /// Nesting depth of a manifest document. Deeper input (even in an ignored field) is an
    /// error: the readers keep an explicit stack of this depth instead of recursing, so a
    /// hostile manifest cannot exhaust a firmware stack.
    MAX_DEPTH = 64, 24;
    /// Keys remembered for duplicate detection across all open mappings of a document.
    MAX_OPEN_KEYS = 512, 64;
    /// Manifest file size (SPEC 1.8; the kubelet's is 10 MiB).
    MAX_MANIFEST_BYTES = 1024 * 1024, 2048;
    /// YAML anchors (`&name`) remembered per document, redefinitions included. Why 16:
    /// manifests that use anchors name a few shared blocks (an env list, a mount set);
    /// firmware refuses anchors and aliases.
    MAX_ANCHORS = 16, 0;
    /// Bytes of YAML that alias expansion may read again, per document: each `*name` costs
    /// the length of the node it names. Why 1 MiB (the manifest size limit): a document
    /// that expands past twice the largest file keel reads is an "alias bomb" (nine nested
    /// levels of ten aliases would expand a 200-byte file to a billion nodes), refused
    /// before it is expanded.
    MAX_ALIAS_BYTES = 1024 * 1024, 0;
    /// Segments of an error's field path (`spec.containers[1].image` has 4); deeper paths
    /// keep their first segments and are marked truncated.
    PATH_SEGS = 8, 8;
    /// Longest manifest file name the reconciler keeps.
    MAX_FILE_NAME = 255, 48;
    /// Longest pod UID (generated UIDs have 32 characters; a fixed `metadata.uid` is
    /// usually a 36-character UUID).
    MAX_UID = 64, 64;
    /// Reconciler events kept until the host drains them; the oldest are dropped (and
    /// counted) beyond.
    EVENT_QUEUE = 256, 16;
    /// Manifest files read and applied per poll (bounded work); the rest wait one poll.
    APPLIES_PER_POLL = 16, 16;
    /// Runtime change reports handled per poll before falling back to a full state sweep.
    CHANGED_BATCH = 32, 32;
    /// Containers (and, separately, sandboxes) of an earlier agent queued for removal at
    /// once. Why 64: orphans only exist after an agent restart that found containers no
    /// manifest wants (pods deleted or edited while it was away); beyond the queue they are
    /// left running and their sandboxes kept, counted in
    /// [`crate::reconcile::Counters::orphans_leaked`] and reported as a capacity event.
    /// Firmware adopts nothing after a reset, so it keeps room for 2.
    MAX_ORPHANS = 64, 2;
    /// Bytes of a mapping key, or of an enum's value, kept to compare with the model's
    /// names (the longest is 29); a longer key names no field (it is hashed in full for
    /// duplicate detection).
    KEY_NAME_BYTES = 48, 48;
}

/// A named capacity, as carried by a capacity error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Limit {
    /// [`MAX_CONTAINERS`]
    Containers,
    /// [`MAX_INIT_CONTAINERS`]
    InitContainers,
    /// [`MAX_ARGS`]
    Args,
    /// [`MAX_ENV`]
    Env,
    /// [`MAX_PORTS`]
    Ports,
    /// [`MAX_MOUNTS`]
    Mounts,
    /// [`MAX_VOLUMES`]
    Volumes,
    /// [`MAX_LABELS`]
    Labels,
    /// [`MAX_TOLERATIONS`]
    Tolerations,
    /// [`MAX_HOST_ALIASES`]
    HostAliases,
    /// [`MAX_DNS_NAMESERVERS`]
    DnsNameservers,
    /// [`MAX_DNS_SEARCHES`]
    DnsSearches,
    /// [`MAX_DNS_OPTIONS`]
    DnsOptions,
    /// [`MAX_SMALL_LIST`]
    SmallList,
    /// [`STRING_BYTES`]
    StringBytes,
    /// [`SPEC_BYTES`]
    SpecBytes,
    /// [`MAX_DEPTH`]
    Depth,
    /// [`MAX_OPEN_KEYS`]
    OpenKeys,
    /// [`MAX_MANIFEST_BYTES`]
    ManifestBytes,
    /// Pod slots handed to the reconciler.
    PodSlots,
    /// Manifest entries the reconciler tracks.
    Manifests,
    /// Containers and sandboxes of an earlier agent queued for removal at once.
    Orphans,
    /// [`MAX_RESOURCES`]
    Resources,
    /// [`MAX_DOWNWARD_ITEMS`]
    DownwardItems,
}

impl Limit {
    /// The constant's name and value, for messages.
    pub const fn describe(self) -> (&'static str, usize) {
        match self {
            Limit::Containers => ("MAX_CONTAINERS", MAX_CONTAINERS),
            Limit::InitContainers => ("MAX_INIT_CONTAINERS", MAX_INIT_CONTAINERS),
            Limit::Args => ("MAX_ARGS", MAX_ARGS),
            Limit::Env => ("MAX_ENV", MAX_ENV),
            Limit::Ports => ("MAX_PORTS", MAX_PORTS),
            Limit::Mounts => ("MAX_MOUNTS", MAX_MOUNTS),
            Limit::Volumes => ("MAX_VOLUMES", MAX_VOLUMES),
            Limit::Resources => ("MAX_RESOURCES", MAX_RESOURCES),
            Limit::DownwardItems => ("MAX_DOWNWARD_ITEMS", MAX_DOWNWARD_ITEMS),
            Limit::Labels => ("MAX_LABELS", MAX_LABELS),
            Limit::Tolerations => ("MAX_TOLERATIONS", MAX_TOLERATIONS),
            Limit::HostAliases => ("MAX_HOST_ALIASES", MAX_HOST_ALIASES),
            Limit::DnsNameservers => ("MAX_DNS_NAMESERVERS", MAX_DNS_NAMESERVERS),
            Limit::DnsSearches => ("MAX_DNS_SEARCHES", MAX_DNS_SEARCHES),
            Limit::DnsOptions => ("MAX_DNS_OPTIONS", MAX_DNS_OPTIONS),
            Limit::SmallList => ("MAX_SMALL_LIST", MAX_SMALL_LIST),
            Limit::StringBytes => ("STRING_BYTES", STRING_BYTES),
            Limit::SpecBytes => ("SPEC_BYTES", SPEC_BYTES),
            Limit::Depth => ("MAX_DEPTH", MAX_DEPTH),
            Limit::OpenKeys => ("MAX_OPEN_KEYS", MAX_OPEN_KEYS),
            Limit::ManifestBytes => ("MAX_MANIFEST_BYTES", MAX_MANIFEST_BYTES),
            Limit::PodSlots => ("pod slots", 0),
            Limit::Manifests => ("manifest entries", 0),
            Limit::Orphans => ("orphans queued for removal", 0),
        }
    }
}
