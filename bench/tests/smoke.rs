//! Tiny scenarios against an in-process broker on an ephemeral port: the
//! generator's handshakes, pipelining and counting work end to end. The
//! "broker PID" is this test process, so CPU figures are not meaningful.

use std::time::Duration;

use bench::scenario::{
    ConnectionsArgs, LatencyArgs, RetainedArgs, Scenario, SubscriptionsArgs, Target, ThroughputArgs,
};
use tokio_util::sync::CancellationToken;

fn tp(pubs: usize, subs: usize, pairwise: bool, qos: u8) -> Scenario {
    Scenario::Throughput(ThroughputArgs {
        pubs,
        subs,
        pairwise,
        qos,
        size: 16,
        count: 500,
        window: 20,
        seconds: 5.0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_scenarios_deliver_everything() {
    let listener = broker::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(broker::server::run(
        listener,
        broker::Config::default(),
        shutdown.clone(),
    ));
    let target = Target {
        addr,
        pid: std::process::id(),
    };
    let scenarios = [
        tp(1, 1, false, 0),
        tp(2, 3, false, 1),
        tp(3, 0, true, 2),
        Scenario::Latency(LatencyArgs {
            rate: 1000.0,
            count: 50,
            size: 16,
        }),
        Scenario::Connections(ConnectionsArgs { count: 20 }),
        Scenario::Subscriptions(SubscriptionsArgs {
            count: 40,
            subscribers: 2,
            messages: 200,
            seconds: 5.0,
        }),
        Scenario::Retained(RetainedArgs {
            count: 250,
            size: 16,
        }),
    ];
    for s in &scenarios {
        let r = tokio::time::timeout(Duration::from_secs(20), s.run(target))
            .await
            .expect("scenario within 20 s")
            .expect("scenario runs");
        let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(json["label"], s.label().as_str());
        if let Some(lost) = r.get("lost") {
            assert_eq!(lost, 0.0, "{}", r.row());
        }
        assert!(r.get("delivered").is_none_or(|d| d > 0.0), "{}", r.row());
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("broker stops")
        .unwrap()
        .unwrap();
}
