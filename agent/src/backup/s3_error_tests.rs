use aws_sdk_s3::error::ErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::SdkBody;
use aws_sdk_s3::types::error::NoSuchKey;

use super::*;

fn service_error(status: u16, err: GetObjectError) -> Result<S3Error, String> {
    let raw = HttpResponse::new(
        status.try_into().map_err(|e| format!("{e:?}"))?,
        SdkBody::empty(),
    );
    Ok(classify(
        "GetObject",
        "s3://bkt/k",
        SdkError::service_error(err, raw),
    ))
}

#[test]
fn sdk_errors_are_classified() -> Result<(), String> {
    let missing = GetObjectError::NoSuchKey(NoSuchKey::builder().build());
    assert_eq!(
        service_error(404, missing)?,
        S3Error::NotFound {
            object: "s3://bkt/k".to_owned()
        }
    );
    let generic = |code| GetObjectError::generic(ErrorMetadata::builder().code(code).build());
    assert!(matches!(
        service_error(404, generic("NoSuchBucket"))?,
        S3Error::Refused { code, .. } if code == "NoSuchBucket"
    ));
    assert!(matches!(
        service_error(403, generic("AccessDenied"))?,
        S3Error::Refused { code, .. } if code == "AccessDenied"
    ));
    let timeout: SdkError<GetObjectError, HttpResponse> = SdkError::timeout_error("slow");
    assert!(matches!(
        classify("GetObject", "s3://bkt/k", timeout),
        S3Error::Timeout {
            op: "GetObject",
            ..
        }
    ));
    Ok(())
}

#[test]
fn the_s3_error_survives_the_trip_through_rustic_core() {
    let e = S3Error::Refused {
        op: "PutObject",
        object: "s3://bkt/k".to_owned(),
        code: "AccessDenied".to_owned(),
    };
    let r = e.clone().into_rustic();
    let back = std::error::Error::source(&*r).and_then(|s| s.downcast_ref::<S3Error>());
    assert_eq!(back, Some(&e));
}
