//! A topic mixing JSON and schema-registry Avro records, valid and not, on every backend:
//! the payloads come from the reference encoders (`tests/fixtures/schema_registry/`,
//! written by Confluent's Python serializers) and the registry is served inside the test.

use bytes::Bytes;
use kafka_thread_manager::decode::schema_registry::{AvroDecoder, HttpSchemaRegistry};
use kafka_thread_manager::{Decode, DecodeError, Json, Message};

use super::{Fixture, TestRecord};

#[allow(dead_code)] // the outage switches are the schema_registry test's
#[path = "../schema_registry/registry.rs"]
mod registry;

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
struct Order {
    id: i64,
    item: String,
    qty: i32,
}

/// Schema-registry framing (magic byte 0) is Avro; anything else is JSON.
#[derive(Clone)]
struct JsonOrAvro {
    avro: AvroDecoder<Order>,
}

impl Decode for JsonOrAvro {
    type Output = Order;
    fn decode(&mut self, message: &Message) -> Result<Order, DecodeError> {
        match message.payload() {
            Some([0, ..]) => self.avro.decode(message),
            _ => Json::<Order>::new().decode(message),
        }
    }
}

#[derive(serde::Deserialize)]
struct Reference {
    name: String,
    hex: String,
    expect: serde_json::Value,
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The Confluent-framed Avro orders of the reference fixtures, with their values.
fn avro_orders() -> Vec<(Vec<u8>, Order)> {
    let all: Vec<Reference> =
        serde_json::from_str(include_str!("../fixtures/schema_registry/payloads.json")).unwrap();
    all.into_iter()
        .filter(|r| r.name.starts_with("avro_order"))
        .map(|r| (from_hex(&r.hex), serde_json::from_value(r.expect).unwrap()))
        .collect()
}

pub fn run(f: &dyn Fixture) {
    let registry = registry::TestRegistry::serve(
        &serde_json::from_str(include_str!("../fixtures/schema_registry/schemas.json")).unwrap(),
    );
    let topic = f.topic("mixed");
    let dead_letters = format!("{topic}.dlq");
    f.create_topic(&topic, 1);
    f.create_topic(&dead_letters, 1);
    let avro = avro_orders();
    assert!(avro.len() >= 3, "the reference fixtures hold Avro orders");
    // (payload, the order it decodes to; None: it must not decode)
    let mut records: Vec<(Vec<u8>, Option<Order>)> = Vec::new();
    for (i, (bytes, order)) in avro.iter().enumerate() {
        let json = Order {
            id: 100 + i as i64,
            item: format!("json-{i}"),
            qty: i as i32,
        };
        records.push((
            format!(
                r#"{{"id":{},"item":"{}","qty":{}}}"#,
                json.id, json.item, json.qty
            )
            .into_bytes(),
            Some(json),
        ));
        records.push((bytes.clone(), Some(order.clone())));
        let mut unknown_id = bytes.clone();
        unknown_id[1..5].copy_from_slice(&99u32.to_be_bytes());
        records.push((unknown_id, None));
        records.push((format!(r#"{{"id": {i}, "item": "#).into_bytes(), None));
        records.push((bytes[..bytes.len() - 1].to_vec(), None)); // a truncated datum
    }
    f.produce(
        &topic,
        0,
        records
            .iter()
            .map(|(p, _)| TestRecord {
                payload: Some(Bytes::from(p.clone())),
                ..TestRecord::default()
            })
            .collect(),
    );
    let decoder = JsonOrAvro {
        avro: AvroDecoder::new(HttpSchemaRegistry::new(registry.url())),
    };
    let expected: Vec<(i64, Order)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, (_, order))| Some((i as i64, order.clone()?)))
        .collect();
    let dead = super::run_typed(f, &topic, records.len() as i64, decoder, &expected);
    for (offset, error) in &dead {
        assert!(
            records[*offset as usize].1.is_none(),
            "offset {offset}: {error}"
        );
        let why = match offset % 5 {
            2 => "schema id 99 is not registered",
            3 => "JSON",
            _ => "Avro",
        };
        assert!(error.contains(why), "offset {offset}: {error}");
    }
    assert_eq!(registry.requests(1), 1, "the Avro schema is looked up once");
}
