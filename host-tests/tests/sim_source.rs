//! Scenario tests: where manifests come from (SPEC 1.2–1.10, core-owned parts).

use keel_core::platform::PlatformErrorKind;
use keel_core::status::{Event, FileState, IgnoreReason};
use keel_host_tests::sim::*;
use keel_host_tests::sim_test;

fn added(w: &World<'_, FakeSource, FakeRuntime>) -> Vec<(u64, String)> {
    w.trace
        .iter()
        .filter(|l| l.contains("PodAdded"))
        .map(|l| {
            let (t, rest) = l.split_once(' ').unwrap();
            (
                (t.parse::<f64>().unwrap() * 1000.0) as u64,
                rest.to_string(),
            )
        })
        .collect()
}

sim_test! {
    fn manifests_present_at_start_are_loaded_on_first_poll() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        for n in ["a", "b", "c"] {
            w.src.write(&format!("{n}.yaml"), P::new(n, "img:1").yaml());
        }
        w.inotify = false;
        let r = w.step();
        assert_eq!(r.at, at(0));
        assert_eq!(added(&w).len(), 3, "{:#?}", w.trace);
        assert_eq!(w.rt.starts.len(), 3);
        assert!(w.rt.starts.iter().all(|s| s.at == at(0)));
    }
}

sim_test! {
    fn periodic_rescan_finds_changes_without_a_notification() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.inotify = false;
        w.run_for(1);
        w.write("late.yaml", P::new("late", "img:1").yaml());
        w.run_until(Instant(19_999));
        assert!(added(&w).is_empty());
        w.run_for(1);
        assert_eq!(added(&w), vec![(20_000, "PodAdded late-node1#1 from late.yaml".into())]);
    }
}

sim_test! {
    fn notification_picks_up_a_change_at_once() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.run_for(3);
        w.write("now.yaml", P::new("now", "img:1").yaml());
        w.run_for(1);
        assert_eq!(added(&w), vec![(3_000, "PodAdded now-node1#1 from now.yaml".into())]);
    }
}

sim_test! {
    fn dotfiles_are_ignored() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write(".web.yaml.swp", P::new("swp", "img:1").yaml());
        w.src.write(".tmp.yaml", P::new("tmp", "img:1").yaml());
        w.run_for(100);
        assert!(added(&w).is_empty());
        assert_eq!(w.file_state(".tmp.yaml"), Some(FileState::Ignored(IgnoreReason::Dotfile)));
        let ignored = w.events_where(|e| matches!(e, Event::FileIgnored { .. }));
        assert_eq!(ignored.len(), 2, "each reported once over 5 re-scans");
        assert!(w.rt.starts.is_empty());
    }
}

sim_test! {
    fn backup_extension_is_ignored_and_reported_once() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write("web.yaml", P::new("web", "nginx:1").yaml());
        w.src.write("web.yaml.bak", P::new("web", "nginx:0").yaml());
        w.src.write("web~", P::new("web", "nginx:0").yaml());
        w.src.write("README", "hello");
        w.run_for(30);
        // A newer backup is written: still ignored, not reported again.
        w.write("web.yaml.bak", P::new("web", "nginx:2").yaml());
        w.run_for(100);
        assert_eq!(added(&w).len(), 1);
        assert_eq!(w.rt.starts.len(), 1);
        assert!(w.rt.containers.values().all(|c| c.image == "nginx:1"));
        let ignored: Vec<_> = w
            .events_where(|e| matches!(e, Event::FileIgnored { reason: IgnoreReason::Extension, .. }));
        assert_eq!(ignored.len(), 3, "{:#?}", w.trace);
    }
}

sim_test! {
    fn subdirectory_fifo_dangling_link_skipped_others_load() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.mkdir("sub.yaml");
        w.src.fifo("pipe.yaml");
        w.src.dangling_link("link.yaml");
        w.src.write("ok.yaml", P::new("ok", "img:1").yaml());
        w.run_for(50);
        assert_eq!(w.file_state("sub.yaml"), Some(FileState::Ignored(IgnoreReason::Directory)));
        assert_eq!(w.file_state("pipe.yaml"), Some(FileState::Ignored(IgnoreReason::Special)));
        assert_eq!(w.file_state("link.yaml"), Some(FileState::Ignored(IgnoreReason::DanglingLink)));
        assert!(matches!(w.file_state("ok.yaml"), Some(FileState::Pod(_))));
        assert_eq!(w.events_where(|e| matches!(e, Event::FileIgnored { .. })).len(), 3);
        assert!(!w.src.log.iter().any(|l| l.contains("read sub") || l.contains("read pipe") || l.contains("read link")));
    }
}

sim_test! {
    fn unreadable_directory_keeps_running_pods() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write("a.yaml", P::new("a", "img:1").yaml());
        w.src.write("b.yaml", P::new("b", "img:1").yaml());
        w.run_for(10);
        w.src.unreadable = true;
        w.src.delete("b.yaml"); // invisible while the directory cannot be read
        w.touched();
        w.run_for(100);
        assert_eq!(w.rt.live_count(), 2, "{:#?}", w.trace);
        assert!(w.events_where(|e| matches!(e, Event::PodTerminating { .. })).is_empty());
        assert_eq!(
            w.events_where(|e| matches!(e, Event::SourceUnavailable { kind: PlatformErrorKind::Io })).len(),
            1
        );
        assert_eq!(w.rec.source_error(), Some(PlatformErrorKind::Io));
        w.src.unreadable = false;
        w.run_for(25);
        assert_eq!(w.events_where(|e| matches!(e, Event::SourceRecovered)).len(), 1);
        assert!(w.rt.live("a-", "app").is_some());
        assert!(w.rt.live("b-", "app").is_none(), "b's file is gone now the directory reads");
    }
}

sim_test! {
    fn missing_directory_is_reported_and_checked_again_each_period() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.inotify = false;
        w.src.missing = true;
        w.run_for(30);
        assert_eq!(w.events_where(|e| matches!(e, Event::SourceUnavailable { kind: PlatformErrorKind::Missing })).len(), 1);
        w.src.missing = false;
        w.src.write("a.yaml", P::new("a", "img:1").yaml());
        w.run_for(15);
        assert_eq!(added(&w), vec![(40_000, "PodAdded a-node1#1 from a.yaml".into())]);
    }
}

sim_test! {
    fn json_detected_by_leading_brace() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write("j.yaml", P::new("j", "img:1").json());
        w.src.write("y.json", P::new("yml", "img:1").yaml());
        w.src.write("bom.json", format!("\u{feff}  \n{}", P::new("bom", "img:1").json()));
        w.run_for(5);
        for f in ["j.yaml", "y.json", "bom.json"] {
            assert!(matches!(w.file_state(f), Some(FileState::Pod(_))), "{f}: {:?}", w.file_state(f));
        }
        assert_eq!(w.rt.live_count(), 3);
    }
}

sim_test! {
    fn oversized_file_is_rejected() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        let mut big = "#".repeat(keel_core::config::MAX_MANIFEST_BYTES);
        big.push('\n');
        big.push_str(&P::new("big", "img:1").yaml());
        w.src.write("big.yaml", big);
        w.run_for(5);
        assert!(matches!(
            w.file_state("big.yaml"),
            Some(FileState::Rejected { error, kept: None }) if error.kind == keel_core::manifest::ErrorKind::FileTooLarge
        ));
        assert!(w.rt.starts.is_empty());
    }
}

sim_test! {
    fn extra_documents_warned() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        let text = format!("{}---\n{}---\n{}", P::new("first", "img:1").yaml(), P::new("second", "img:2").yaml(), P::new("third", "img:3").yaml());
        w.src.write("multi.yaml", text);
        w.run_for(50);
        assert_eq!(added(&w).len(), 1);
        assert!(w.rt.live("first-", "app").is_some());
        let warned = w.events_where(|e| matches!(e, Event::ExtraDocuments { count: 2, line, .. } if *line > 1));
        assert_eq!(warned.len(), 1, "{:#?}", w.trace);
    }
}

sim_test! {
    fn insecure_file_refused_and_accepted_once_fixed() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write("a.yaml", P::new("a", "img:1").yaml());
        w.src.chmod_insecure("a.yaml");
        w.run_for(30);
        assert_eq!(w.file_state("a.yaml"), Some(FileState::Ignored(IgnoreReason::Insecure)));
        assert!(w.rt.starts.is_empty());
        w.src.chmod_secure("a.yaml");
        w.touched();
        w.run_for(5);
        assert!(matches!(w.file_state("a.yaml"), Some(FileState::Pod(_))));
    }
}

sim_test! {
    fn running_pod_survives_its_file_turning_insecure_and_back() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write("a.yaml", P::new("a", "img:1").yaml());
        w.run_for(5);
        w.src.chmod_insecure("a.yaml");
        w.touched();
        w.run_for(30);
        assert_eq!(w.rt.live_count(), 1, "kept like a bad edit");
        w.src.chmod_secure("a.yaml");
        w.touched();
        w.run_for(30);
        assert!(matches!(w.file_state("a.yaml"), Some(FileState::Pod(_))), "{:?}\n{:#?}", w.file_state("a.yaml"), w.trace);
        assert_eq!(w.rt.starts.len(), 1, "never restarted");
        // And deleting it afterwards removes the pod.
        w.delete("a.yaml");
        w.run_for(40);
        assert_eq!(w.rt.live_count(), 0);
    }
}

sim_test! {
    fn unreadable_file_keeps_its_pod_and_is_retried() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write("a.yaml", P::new("a", "img:1").yaml());
        w.run_for(5);
        w.src.fail_reads("a.yaml", true);
        w.write("a.yaml", P::new("a", "img:2").yaml());
        w.run_for(30);
        assert!(matches!(w.file_state("a.yaml"), Some(FileState::Unreadable { kept: Some(_), .. })));
        assert!(w.rt.live("a-", "app").is_some());
        w.src.fail_reads("a.yaml", false);
        w.run_for(25);
        assert_eq!(w.rt.live("a-", "app").unwrap().1.image, "img:2");
    }
}

sim_test! {
    fn every_newly_ignored_file_of_one_listing_is_reported_once() {
        // More ignored names in one listing than any fixed list held (it had room for 8).
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        for i in 0..20 {
            w.src.write(&format!("backup{i:02}.yaml.bak"), "x");
        }
        w.run_for(60);
        let ignored = w.events_where(|e| matches!(e, Event::FileIgnored { reason: IgnoreReason::Extension, .. }));
        assert_eq!(ignored.len(), 20);
        assert_eq!(w.rec.counters().events_dropped, 0);
    }
}

sim_test! {
    fn drain_stops_every_pod_and_takes_no_new_manifest() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.write("a.yaml", P::new("a", "img:1").yaml());
        w.write("b.yaml", P::new("b", "img:1").yaml());
        w.run_for(2);
        assert_eq!(w.rt.live_count(), 2);
        w.rec.drain();
        assert!(w.rec.draining());
        w.write("late.yaml", P::new("late", "img:1").yaml());
        w.run_for(40);
        let deleted = w.events_where(|e| {
            matches!(e, Event::PodTerminating { reason: keel_core::status::StopReason::Deleted, .. })
        });
        assert_eq!(deleted.len(), 2, "{:#?}", w.trace);
        assert_eq!(w.rt.live_count(), 0);
        assert!(w.rec.slots().iter().all(|s| !s.is_used()));
        assert_eq!(added(&w).len(), 2, "nothing is taken while draining");
    }
}

sim_test! {
    fn a_table_full_of_ignored_files_still_takes_a_manifest_and_says_so_once() {
        // 16 file entries; 40 backup files fill them on the first listing.
        let mut st = Storage::new(8, 16);
        let mut w = World::fake(&mut st);
        for i in 0..40 {
            w.src.write(&format!("junk-{i:02}.bak"), "x");
        }
        w.run_for(1);
        // A manifest written later takes the place of an ignored entry.
        w.write("late.yaml", P::new("late", "img:1").yaml());
        w.run_for(1);
        assert_eq!(added(&w).len(), 1, "{:#?}", w.trace);
        // Many re-lists of the same crowded directory: the capacity is reported when the
        // number left out changes (the first listing, the manifest pushing one more out),
        // never again while the directory stays as it is.
        w.run_for(200);
        let full = w.events_where(|e| matches!(e, Event::CapacityFull { .. }));
        assert_eq!(full.len(), 2, "{full:?}");
        assert!(full.iter().all(|(t, _)| *t < at(30)), "{full:?}");
        assert!(w.rec.counters().files_untracked > 24);
        assert!(w.pod("late").is_some());
    }
}
