use std::time::Duration;

use serde_json::json;

use super::*;

fn ev(ns: &str, agent: &str, t: &str) -> NewEvent {
    NewEvent {
        kind: EventKind::Memory,
        event_type: t.into(),
        namespace: Some(ns.into()),
        ns_id: 1,
        agent_id: Some(agent.into()),
        data: json!({"event_type": t, "namespace": ns}),
    }
}

fn all() -> Filter {
    Filter {
        kinds: EventKind::mask(&[EventKind::Memory, EventKind::Namespace]),
        within: Visibility::All,
        namespace: None,
        agent_id: None,
        event_types: vec![],
    }
}

fn always(_: &str, _: u64) -> bool {
    true
}

#[test]
fn events_are_numbered_from_the_start_and_read_after_a_position() {
    let hub = EventHub::starting_at(1, 100, 1000);
    assert_eq!(hub.tail(), 1000);
    hub.publish([ev("a", "x", "stored"), ev("a", "x", "recalled"), ev("b", "y", "stored")]);
    assert_eq!(hub.tail(), 1003);
    let p = hub.poll(1000, &all(), 10, &always);
    assert_eq!(p.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1001, 1002, 1003]);
    assert_eq!((p.position, p.dropped), (1003, 0));
    let p = hub.poll(1002, &all(), 10, &always);
    assert_eq!(p.events.len(), 1);
    assert_eq!(p.events[0].namespace.as_deref(), Some("b"));
    // The limit stops at the last event returned; the next poll continues there.
    let p = hub.poll(1000, &all(), 2, &always);
    assert_eq!((p.events.len(), p.position), (2, 1002));
}

#[test]
fn a_subscriber_sees_only_the_namespaces_it_may_read() {
    let hub = EventHub::starting_at(1, 100, 0);
    hub.publish([ev("acme-a", "x", "stored"), ev("globex", "y", "stored"), ev("acme-b", "z", "stored")]);
    let f = Filter { within: Visibility::Within(vec!["acme-*".into()]), ..all() };
    let p = hub.poll(0, &f, 10, &always);
    let names: Vec<_> = p.events.iter().filter_map(|e| e.namespace.clone()).collect();
    assert_eq!(names, vec!["acme-a", "acme-b"]);
    // Filtered events still advance the position: nothing is read twice.
    assert_eq!(p.position, 3);
    let f = Filter { namespace: Some("acme-b".into()), agent_id: Some("z".into()), ..all() };
    assert_eq!(hub.poll(0, &f, 10, &always).events.len(), 1);
    let f = Filter { event_types: vec!["recalled".into()], ..all() };
    assert!(hub.poll(0, &f, 10, &always).events.is_empty());
    let f = Filter { kinds: EventKind::mask(&[EventKind::Audit]), ..all() };
    assert!(hub.poll(0, &f, 10, &always).events.is_empty());
}

#[test]
fn an_overwritten_gap_is_reported_with_its_size() {
    let hub = EventHub::starting_at(1, 3, 0);
    hub.publish((0..10).map(|i| ev("a", "x", &format!("e{i}"))));
    // Held: 8, 9, 10. A subscriber at 2 missed 3..=7.
    let p = hub.poll(2, &all(), 10, &always);
    assert_eq!(p.dropped, 5);
    assert_eq!(p.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![8, 9, 10]);
    // Position 0: from the oldest held, no gap claimed.
    let p = hub.poll(0, &all(), 10, &always);
    assert_eq!((p.dropped, p.events.len()), (0, 3));
    // A position from the future (the node restarted with its clock behind): the newest.
    let p = hub.poll(99, &all(), 10, &always);
    assert_eq!((p.position, p.events.len(), p.dropped), (10, 0, 0));
}

#[test]
fn memory_events_of_an_erased_namespace_are_never_delivered() {
    let hub = EventHub::starting_at(1, 10, 0);
    hub.publish([ev("gone", "x", "stored")]);
    hub.publish([NewEvent { kind: EventKind::Namespace, ..ev("gone", "x", "namespace_deleted") }]);
    let live = |ns: &str, _id: u64| ns != "gone";
    let p = hub.poll(0, &all(), 10, &live);
    assert_eq!(p.events.len(), 1);
    assert_eq!(p.events[0].event_type, "namespace_deleted");
    assert_eq!(p.position, 2);
}

#[test]
fn audit_records_follow_the_audit_view() {
    let hub = EventHub::starting_at(1, 10, 0);
    let rec = |ns: &str| NewEvent {
        kind: EventKind::Audit,
        event_type: "access".into(),
        namespace: Some(ns.into()),
        ns_id: 0,
        agent_id: None,
        data: json!({"namespaces": [ns]}),
    };
    hub.publish([rec("acme-1"), rec("globex"), NewEvent { data: json!({}), namespace: None, ..rec("x") }]);
    let f = Filter {
        kinds: EventKind::mask(&[EventKind::Audit]),
        within: Visibility::Within(vec!["acme-*".into()]),
        ..all()
    };
    let p = hub.poll(0, &f, 10, &always);
    assert_eq!(p.events.len(), 1, "a tenant sees neither another tenant's record nor the operator's");
    let f = Filter { within: Visibility::All, ..f };
    assert_eq!(hub.poll(0, &f, 10, &always).events.len(), 3);
}

#[tokio::test]
async fn a_waiting_poll_wakes_on_a_matching_event_and_times_out_otherwise() {
    let hub = std::sync::Arc::new(EventHub::starting_at(1, 10, 0));
    let f = Filter { namespace: Some("b".into()), ..all() };
    let p = hub.wait_poll(0, &f, 10, Duration::from_millis(50), &always).await;
    assert!(p.events.is_empty());
    let h = hub.clone();
    let waiter = tokio::spawn(async move { h.wait_poll(0, &f, 10, Duration::from_secs(10), &always).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    hub.publish([ev("a", "x", "stored")]);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiter.is_finished(), "an event it may not see does not wake it with nothing");
    hub.publish([ev("b", "x", "stored")]);
    let p = tokio::time::timeout(Duration::from_secs(5), waiter).await.ok().and_then(|r| r.ok());
    let p = p.unwrap_or_else(|| panic!("the waiting poll did not return"));
    assert_eq!(p.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn the_buffer_is_bounded_in_bytes_as_well_as_in_events() {
    let hub = EventHub::starting_at(1, 1000, 0).with_max_bytes(4 * 1024);
    let big = |i: usize| NewEvent { data: json!({"blob": "x".repeat(1000), "i": i}), ..ev("a", "x", "stored") };
    hub.publish((0..20).map(big));
    let p = hub.poll(0, &all(), 100, &always);
    assert!(p.events.len() <= 4 && p.events.len() >= 2, "{} events of ~1.2 KB in 4 KiB", p.events.len());
    assert_eq!(p.events.last().map(|e| e.seq), Some(20), "the newest are kept");
    // A subscriber behind them is told how many it missed.
    let p = hub.poll(1, &all(), 100, &always);
    assert_eq!(p.dropped, 20 - 1 - p.events.len() as u64);
}

#[test]
fn open_subscriptions_are_bounded_per_key_and_freed_when_dropped() {
    let hub = std::sync::Arc::new(EventHub::starting_at(1, 10, 0));
    let held: Vec<_> =
        (0..MAX_SUBSCRIPTIONS_PER_KEY).map(|_| hub.admit("k").unwrap_or_else(|e| panic!("{e:?}"))).collect();
    let refused = hub.admit("k").err().map(|e| (e.status.as_u16(), e.code.to_string()));
    assert_eq!(refused, Some((429, "TOO_MANY_STREAMS".to_string())));
    assert!(hub.admit("other").is_ok(), "another key is not held back");
    drop(held);
    assert!(hub.admit("k").is_ok(), "closed streams free their places");
}
