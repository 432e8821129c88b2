export default function Home() {
  return <h1>A Next.js app deployed by hostd</h1>;
}
