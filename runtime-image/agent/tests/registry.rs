//! The credentials an instance pulls an ECR image with: asked of ECR (GetAuthorizationToken, as
//! the instance role) through the agent's real SDK client, here against moto on 127.0.0.1; a
//! registry that is not ECR is pulled from without any.

use gilliam_agent::cloud::Cloud;
use gilliam_agent::sdk::SdkCloud;
use gilliam_tests::moto::Moto;

#[test]
fn ecr_registries_get_a_token_and_other_registries_none() {
    let moto = Moto::start();
    // This test binary's only test: the endpoint is the process's to set.
    std::env::set_var("AWS_ENDPOINT_URL", &moto.url);
    let cloud = SdkCloud::connect("eu-west-1").expect("clients");
    let (user, password) = cloud.registry_credentials("123456789012.dkr.ecr.eu-west-1.amazonaws.com").expect("token").expect("an ECR registry");
    assert_eq!(user, "AWS");
    assert!(!password.is_empty());
    assert_eq!(cloud.registry_credentials("127.0.0.1:5000").expect("not ECR"), None);
}
