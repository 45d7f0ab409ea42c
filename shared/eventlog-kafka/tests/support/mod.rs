//! librdkafka's mock cluster on a thread of its own (its handle is neither `Send` nor `Sync`),
//! driven through a channel: tests get the bootstrap address and broker up/down controls.

#![allow(dead_code)]

use std::sync::mpsc;
use std::sync::Mutex;

use rdkafka::mocking::MockCluster;

enum Command {
    Down(i32),
    Up(i32),
    CreateTopic(String, i32),
}

pub struct MockKafka {
    pub bootstrap: String,
    commands: Mutex<Option<mpsc::Sender<(Command, mpsc::Sender<()>)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockKafka {
    pub fn start(brokers: i32) -> MockKafka {
        let (address_tx, address_rx) = mpsc::channel();
        let (command_tx, command_rx) = mpsc::channel::<(Command, mpsc::Sender<()>)>();
        let thread = std::thread::spawn(move || {
            let cluster = MockCluster::new(brokers).expect("mock cluster");
            address_tx.send(cluster.bootstrap_servers()).expect("send address");
            for (command, done) in command_rx {
                match command {
                    Command::Down(id) => cluster.broker_down(id).expect("broker down"),
                    Command::Up(id) => cluster.broker_up(id).expect("broker up"),
                    Command::CreateTopic(name, partitions) => {
                        // Reopening a log asks again; an existing topic is fine.
                        if let Err(err) = cluster.create_topic(&name, partitions, 1) {
                            assert!(err.to_string().contains("TopicAlreadyExists"), "create topic {name}: {err}");
                        }
                    }
                }
                let _ = done.send(());
            }
        });
        let bootstrap = address_rx.recv().expect("mock cluster address");
        MockKafka { bootstrap, commands: Mutex::new(Some(command_tx)), thread: Some(thread) }
    }

    fn send(&self, command: Command) {
        let (done_tx, done_rx) = mpsc::channel();
        self.commands.lock().unwrap().as_ref().expect("running").send((command, done_tx)).expect("mock thread alive");
        done_rx.recv().expect("mock command done");
    }

    pub fn broker_down(&self, id: i32) {
        self.send(Command::Down(id));
    }

    pub fn broker_up(&self, id: i32) {
        self.send(Command::Up(id));
    }

    /// Creates the log's topics on the mock cluster and returns the log configuration for them.
    pub fn config(&self, prefix: &str, partitions: i32) -> crm_eventlog_kafka::KafkaConfig {
        let mut config = crm_eventlog_kafka::KafkaConfig::new(&self.bootstrap, prefix);
        config.partitions = partitions;
        config.create_topics = false;
        config.session_timeout = std::time::Duration::from_secs(3);
        for topic in config.topic_names() {
            self.send(Command::CreateTopic(topic, partitions));
        }
        config
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        self.commands.lock().unwrap().take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
