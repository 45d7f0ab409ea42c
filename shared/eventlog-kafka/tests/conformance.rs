//! The shared event-log conformance suite on Kafka: against librdkafka's in-process mock
//! cluster, and against a real Kafka-protocol broker (tansu) over TCP at
//! `CRM_TEST_KAFKA_BROKERS` (scripts/test.sh starts one; without it those tests fail).

use std::sync::Arc;

use async_trait::async_trait;
use crm_eventlog::conformance::LogHarness;
use crm_eventlog::EventLog;
use crm_eventlog_kafka::{KafkaConfig, KafkaLog};

mod support;

mod mock {
    use super::*;
    use crate::support::MockKafka;

    pub struct MockHarness {
        cluster: MockKafka,
        prefix: String,
    }

    impl MockHarness {
        pub fn new() -> MockHarness {
            MockHarness { cluster: MockKafka::start(3), prefix: format!("t{}", uuid::Uuid::new_v4().simple()) }
        }
    }

    #[async_trait]
    impl LogHarness for MockHarness {
        async fn open(&self) -> Arc<dyn EventLog> {
            let config = self.cluster.config(&self.prefix, 4);
            Arc::new(KafkaLog::connect(config).await.expect("connect to the mock cluster"))
        }
    }

    crm_eventlog::eventlog_conformance_suite!(MockHarness::new());
}

mod tansu {
    use super::*;

    pub struct BrokerHarness {
        brokers: String,
        prefix: String,
    }

    impl BrokerHarness {
        pub fn new() -> BrokerHarness {
            let brokers = std::env::var("CRM_TEST_KAFKA_BROKERS")
                .expect("CRM_TEST_KAFKA_BROKERS is not set: scripts/test.sh starts a tansu broker and sets it");
            BrokerHarness { brokers, prefix: format!("t{}", uuid::Uuid::new_v4().simple()) }
        }
    }

    #[async_trait]
    impl LogHarness for BrokerHarness {
        async fn open(&self) -> Arc<dyn EventLog> {
            let mut config = KafkaConfig::new(&self.brokers, &self.prefix);
            config.partitions = 3;
            config.session_timeout = std::time::Duration::from_secs(6);
            Arc::new(KafkaLog::connect(config).await.expect("connect to the broker"))
        }
    }

    crm_eventlog::eventlog_conformance_suite!(BrokerHarness::new());
}
